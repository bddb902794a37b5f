"""Estimated compute for a dry run: measured, not guessed.

From the sweep's own finished cells where there are any (their recorded training seconds per step);
otherwise from a few timed steps of one pending cell in this process.
"""

from __future__ import annotations

import time

from augworth.results import Store, connect

from .plan import Plan

PROBE_STEPS = 10


def estimate_cpu_seconds(plan: Plan, store: Store) -> float:
    if not plan.pending:
        return 0.0
    per_step = _per_step_from_store(plan, store)
    if per_step is None:
        per_step = _per_step_probe(plan)
    cpus = plan.spec.execution.cpus_per_cell
    return sum(c.steps for c in plan.pending) * per_step * cpus


def _per_step_from_store(plan: Plan, store: Store) -> float | None:
    if not plan.done:
        return None
    con = connect(store, plan.spec.name)
    value = con.execute("SELECT avg(train_seconds / steps) FROM results WHERE final").fetchone()[0]
    return float(value) if value else None


def _per_step_probe(plan: Plan) -> float:
    import dataclasses

    import torch

    from augworth.trainables.datasets import load_dataset
    from augworth.trainables.train import train_cell

    cell = plan.pending[0]
    torch.set_num_threads(max(1, int(plan.spec.execution.cpus_per_cell)))
    data = load_dataset(cell.dataset, plan.spec.dataset.root, options=dict(plan.spec.dataset.options),
                        download=plan.spec.dataset.download)
    probe = dataclasses.replace(cell, steps=PROBE_STEPS + 2, eval_every=PROBE_STEPS + 2, warmup_steps=0)
    train_cell(dataclasses.replace(probe, steps=2, eval_every=2), data, [])  # warm-up
    t0 = time.perf_counter()
    train_cell(probe, data, [])
    return (time.perf_counter() - t0) / probe.steps


# ----- presets: grid size and GPU-hours without loading any data --------------------------------------

def estimate_gpu_hours(spec) -> float:  # spec: search_spaces.Spec
    """Training images of the whole grid over each model's assumed GPU throughput.

    The throughput is the model registry's `gpu_images_per_second` (an assumption for one A100-class GPU at
    the model's default width, bf16, batch 128; we had no GPU to measure on), scaled to other widths by the
    ratio of forward FLOPs per image, times the invariance wrapper's `forward_cost` (`average` runs every
    image twice).
    """
    from augworth.search_spaces import grid_size
    from augworth.trainables.datasets import DATASETS
    from augworth.trainables.invariance import INVARIANCES
    from augworth.trainables.models import MODELS, default_width, flops_per_image

    # the option where the spec sets one, else the registry's; a folder of images of unknown size: CIFAR's 32
    side = int(spec.dataset.options.get("image_size") or DATASETS.get(spec.dataset.name).meta.get("image_size", 32))
    per_model_cells = grid_size(spec) // max(1, sum(len(m.widths()) for m in spec.models()))
    seconds = 0.0
    for model in spec.models():
        meta = MODELS.get(model.name).meta
        base_width = default_width(model.name)
        base_rate = float(meta.get("gpu_images_per_second", 10_000))
        for width in model.widths():
            width = width or base_width
            # the registry's throughput is for 32x32 images at the default width: scale by FLOPs from there
            ratio = flops_per_image(model.name, width, side) / flops_per_image(model.name, base_width, 32)
            rate = base_rate / ratio
            for invariance in spec.invariance:
                cells = per_model_cells // len(spec.invariance)
                cost = float(INVARIANCES.get(invariance).meta.get("forward_cost", 1.0))  # average: 2 images each
                seconds += cells * spec.budget.steps * spec.budget.batch_size * cost / rate
    return seconds / 3600
