"""Small builders shared by the tests."""

from __future__ import annotations

import datetime as dt

from augworth.search_spaces import Cell, canonical_json


def make_cell(**over) -> Cell:
    base = dict(dataset="digits", dataset_fingerprint="f" * 16, data_size=100, seed=0, augmentation="crop",
                strength=2.0, model="small_cnn", width=8, steps=10, batch_size=16, eval_every=5, lr=0.05,
                momentum=0.9, nesterov=True, weight_decay=5e-4, warmup_steps=2)
    return Cell(**(base | over))


def rows_for(cell: Cell, n_steps: int = 2, eval_sets=("test", "corrupted")) -> list[dict]:
    rows = []
    for i in range(1, n_steps + 1):
        for name in eval_sets:
            rows.append(cell.to_dict() | {"step": 5 * i, "final": i == n_steps, "eval_set": name, "accuracy": 0.5,
                                          "loss": 1.0, "n_eval": 10, "train_seconds": 0.1 * i,
                                          "created_at": dt.datetime.now(dt.UTC), "config_json": canonical_json(cell)})
    return rows


def finished_sweep(store, text, fingerprints=None):
    """A sweep whose every cell is in the store, its rows stamped with each eval set's fingerprint (or the
    given ones), as a run leaves it; no Ray needed."""
    from augworth.orchestrator.plan import plan_sweep
    from augworth.trainables.datasets import eval_set_fingerprint, load_dataset

    plan = plan_sweep(text, "e.yaml", store)
    digits = load_dataset("digits")
    fingerprints = fingerprints or {name: eval_set_fingerprint(digits, name) for name in ("test", "corrupted")}
    store.write_spec(plan.spec.name, plan.spec.to_yaml())
    store.write_grid(plan.spec.name, [{"cell_key": c.cell_key} | c.to_dict() for c in plan.cells])
    for cell in plan.cells:
        rows = [r | {"eval_set_fingerprint": fingerprints[r["eval_set"]]} for r in rows_for(cell)]
        store.write_cell(plan.spec.name, cell.cell_key, rows)
    return plan


def gen(seed: int, device: str = "cpu"):  # -> torch.Generator
    import torch

    return torch.Generator(device=device).manual_seed(seed)


def smooth_images(n: int, channels: int = 3, size: int = 32, seed: int = 0):  # -> torch.Tensor
    """Random images without pixel-level detail, on the uint8 grid (k / 255) like a real data set."""
    import torch
    import torch.nn.functional as F

    low = torch.rand(n, channels, 4, 4, generator=gen(seed))
    x = F.interpolate(low, size=size, mode="bilinear", align_corners=False)
    return (x * 255).round() / 255
