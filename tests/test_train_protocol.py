"""The paper's protocol in the training loop: views, invariance, micro-batches, probes, eval-set requests,
uint8 data (no Ray needed)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from factories import make_cell
from torch import nn

from augworth.search_spaces.cells import ProbeSettings
from augworth.trainables.augmentations import create_augmentation
from augworth.trainables.datasets import load_dataset, make_dataset
from augworth.trainables.train import (
    DeviceSettings,
    augmented_batches,
    batch_indices,
    fixed_views,
    repeated,
    train_cell,
    train_step,
)
from augworth.trainables.trainable import CellContext, run_cell


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def tiny_cell(digits, **over):
    base = make_cell(dataset_fingerprint=digits.fingerprint, model="small_cnn", width=4, steps=8, batch_size=16,
                     eval_every=4, warmup_steps=2, data_size=60, augmentation="flip", strength=None)
    return dataclasses.replace(base, **over)


CPU = DeviceSettings(torch.device("cpu"), torch.contiguous_format, None, check_every=1)


# ----- views ----------------------------------------------------------------------------------------

def test_fixed_views_are_r_frozen_views_per_image_the_first_clean_on_request():
    x = torch.rand(6, 1, 8, 8)
    augment = create_augmentation("crop", 2.0)
    views = fixed_views(x, augment, torch.Generator().manual_seed(0), r=3, first_clean=True)
    assert views.shape == (18, 1, 8, 8)
    assert torch.equal(views[:6], x)  # view 0 of image i at i: the image itself
    assert not torch.equal(views[6:12], views[12:18])  # two independent augmented views
    again = fixed_views(x, augment, torch.Generator().manual_seed(0), r=3, first_clean=True)
    assert torch.equal(views, again)  # drawn from the cell's own stream: a resumed cell gets the same views


def test_fixed_views_of_uint8_images_are_rounded_to_uint8():
    x = (torch.rand(4, 3, 8, 8) * 255).round().to(torch.uint8)
    views = fixed_views(x, create_augmentation("rotate", 30.0), torch.Generator().manual_seed(0), r=2,
                        first_clean=False)
    assert views.dtype == torch.uint8 and views.shape == (8, 3, 8, 8)


def test_same_batch_holds_k_views_of_batch_size_over_k_images():
    order = repeated(batch_indices(20, 4, 3, torch.Generator().manual_seed(0)), 4)
    x = torch.arange(20, dtype=torch.float32).view(20, 1, 1, 1).expand(20, 1, 4, 4).contiguous() / 20
    y = torch.arange(20)
    batches = list(augmented_batches(x, y, order, create_augmentation("none"), torch.Generator(), steps=3,
                                     batch_size=16))
    assert len(batches) == 3
    for _, yb in batches:
        assert len(yb) == 16 and len(set(yb.tolist())) == 4
        assert all(yb.tolist().count(label) == 4 for label in set(yb.tolist()))


@pytest.mark.parametrize("views", [("fixed", 2, False), ("fixed", 3, True), ("same_batch", 4, False)])
def test_cells_with_fixed_or_same_batch_views_train_and_differ_from_random_views(digits, views):
    mode, r, first_clean = views
    random = train_cell(tiny_cell(digits), digits, ["test"])
    cell = tiny_cell(digits, views=mode, views_r=r, views_first_clean=first_clean)
    result = train_cell(cell, digits, ["test"])
    assert [e.step for e in result.evaluations] == [4, 8]
    assert result.evaluations[-1].loss != random.evaluations[-1].loss
    again = train_cell(cell, digits, ["test"])  # deterministic
    assert [(e.step, e.loss, e.accuracy) for e in again.evaluations] == \
        [(e.step, e.loss, e.accuracy) for e in result.evaluations]


# ----- micro-batches ----------------------------------------------------------------------------------

def test_accumulated_micro_batches_give_the_full_batch_update_without_batchnorm():
    torch.manual_seed(0)
    x, y = torch.randn(16, 3, 4, 4), torch.randint(0, 5, (16,))
    models = [nn.Sequential(nn.Flatten(), nn.Linear(48, 5)) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    for model, accumulate in zip(models, (1, 4), strict=True):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        loss = train_step(model, optimizer, x, y, CPU, accumulate)
        assert loss.ndim == 0
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_an_accumulating_cell_is_another_cell_and_trains(digits):
    plain = tiny_cell(digits)
    micro = tiny_cell(digits, accumulate=2)
    assert micro.cell_key != plain.cell_key
    result = train_cell(micro, digits, ["test"])
    assert result.evaluations[-1].loss != train_cell(plain, digits, ["test"]).evaluations[-1].loss


# ----- invariance -------------------------------------------------------------------------------------

def test_normalize_standardises_the_models_inputs_and_changes_training_not_the_weights_init(digits):
    from augworth.trainables.datasets import to_float
    from augworth.trainables.models import Standardize, create_model, init_seeded, standardized

    x = to_float(digits.train_x)
    seen = standardized(torch.nn.Identity(), digits.mean, digits.std)(x)
    assert seen.mean(dim=(0, 2, 3)).abs().max() < 1e-4 and (seen.std(dim=(0, 2, 3)) - 1).abs().max() < 1e-3
    plain_model = init_seeded(create_model("small_cnn", width=4, in_channels=1, num_classes=10), 0)
    assert set(standardized(plain_model, digits.mean, digits.std).state_dict()) == \
        {f"1.{k}" for k in plain_model.state_dict()}  # no buffers of its own in a checkpoint
    assert isinstance(standardized(plain_model, digits.mean, digits.std)[0], Standardize)
    plain = train_cell(tiny_cell(digits), digits, ["test"])
    normalized = train_cell(tiny_cell(digits, normalize=True), digits, ["test"])
    assert normalized.param_count == plain.param_count
    assert normalized.evaluations[-1].loss != plain.evaluations[-1].loss


@pytest.mark.parametrize("invariance", ["average", "orbit_select"])
def test_flip_changes_nothing_for_a_model_its_invariance_registry_entry_makes_flip_redundant(digits, invariance):
    from augworth.trainables.invariance import INVARIANCES

    assert "flip" in INVARIANCES.get(invariance).meta["makes_redundant"]  # what `plan` warns with
    plain = train_cell(tiny_cell(digits, augmentation="none", invariance=invariance), digits, ["test"])
    flipped = train_cell(tiny_cell(digits, augmentation="flip", invariance=invariance), digits, ["test"])
    assert [e.loss for e in flipped.evaluations] == pytest.approx([e.loss for e in plain.evaluations], rel=1e-4)


@pytest.mark.parametrize("invariance", ["average", "orbit_select", "shift_average", "center_of_mass"])
def test_invariant_cells_train_with_the_plain_models_parameters(digits, invariance):
    plain = train_cell(tiny_cell(digits, augmentation="none"), digits, ["test"])
    wrapped = train_cell(tiny_cell(digits, augmentation="none", invariance=invariance), digits, ["test"])
    assert wrapped.param_count == plain.param_count
    assert wrapped.evaluations[-1].loss != plain.evaluations[-1].loss


# ----- probes and eval sets -----------------------------------------------------------------------------

def test_probes_fill_their_columns_at_their_steps_only(digits):
    probes = ProbeSettings(grad_noise=True, flatness=True, hessian=True, steps=(2, 8), samples=48, threshold=5.0,
                           batch_size=16, directions=2, hessian_iterations=3)
    cell = tiny_cell(digits)
    result = train_cell(cell, digits, ["test", "corrupted"], probes=probes)
    by_step: dict[int, list] = {}
    for e in result.evaluations:
        by_step.setdefault(e.step, []).append(e)
    assert sorted(by_step) == [2, 4, 8]  # the probe step 2 gets evaluations too
    for step, rows in by_step.items():
        probed = step in (2, 8)
        for e in rows:
            values = (e.grad_noise, e.flatness, e.flatness_std, e.hessian_top_eig)
            assert all((v is not None) == probed for v in values), (step, values)
        if probed:
            assert rows[0].grad_noise > 0 and rows[0].flatness > 0 and rows[0].flatness_std >= 0
            assert rows[0].grad_noise == rows[1].grad_noise  # one measurement per step, on every eval set's row
    # probes measure; they never change training
    plain = train_cell(cell, digits, ["test", "corrupted"])
    assert [(e.step, e.loss) for e in plain.evaluations] == \
        [(e.step, e.loss) for e in result.evaluations if e.step != 2]


def test_eval_set_requests_are_stored_under_their_labels(digits):
    requests = [{"label": "in_dist", "name": "test", "root": None, "options": {}}, "corrupted"]
    result = train_cell(tiny_cell(digits), digits, requests)
    assert {e.eval_set for e in result.evaluations} == {"in_dist", "corrupted"}
    report = run_cell(tiny_cell(digits), CellContext(eval_sets=tuple(requests), retries=0,
                                                     probes=ProbeSettings(grad_noise=True, samples=32, batch_size=8)))
    rows = report["cell_rows"]
    assert {r["eval_set"] for r in rows} == {"in_dist", "corrupted"}
    assert [r["grad_noise"] is not None for r in rows] == [r["final"] for r in rows]


def test_uint8_data_trains_like_the_same_images_as_floats(digits):
    def as_uint8(t: torch.Tensor) -> torch.Tensor:
        return (t * 255).round().to(torch.uint8)

    q = make_dataset("digits8", as_uint8(digits.train_x), digits.train_y, as_uint8(digits.test_x), digits.test_y,
                     num_classes=10)
    f = make_dataset("digits8", as_uint8(digits.train_x).float() / 255, digits.train_y,
                     as_uint8(digits.test_x).float() / 255, digits.test_y, num_classes=10)
    f = dataclasses.replace(f, fingerprint=q.fingerprint)  # the same subsets (they are salted with it)
    assert q.train_x.dtype == torch.uint8
    assert q.mean == pytest.approx(f.mean, abs=1e-6)
    cell = tiny_cell(digits, augmentation="crop", strength=2.0)
    a = train_cell(dataclasses.replace(cell, dataset_fingerprint=q.fingerprint), q, ["test"])
    b = train_cell(dataclasses.replace(cell, dataset_fingerprint=f.fingerprint), f, ["test"])
    assert [e.loss for e in a.evaluations] == pytest.approx([e.loss for e in b.evaluations], rel=1e-4)


def test_the_command_line_takes_dataset_options_and_eval_set_mappings(tmp_path, capsys):
    import json

    from augworth.trainables.train_cli import main

    data = load_dataset("synthetic", options={"image_size": 16, "pool": 120, "test": 40})
    cell = make_cell(dataset="synthetic", dataset_fingerprint=data.fingerprint, model="small_cnn", width=4,
                     steps=4, batch_size=8, eval_every=4, warmup_steps=1, data_size=40, augmentation="crop_flip",
                     strength=None, views="same_batch", views_r=2)
    path = tmp_path / "cell.json"
    path.write_text(json.dumps(cell.to_dict()))
    out = tmp_path / "rows.jsonl"
    assert main(["--cell", str(path), "--device", "cpu", "--out", str(out),
                 "--dataset-options", '{"image_size": 16, "pool": 120, "test": 40}',
                 "--eval-sets", "test", '{"name": "corrupted", "label": "shifted"}']) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["eval_set"] for r in rows} == {"test", "shifted"} and {r["views"] for r in rows} == {"same_batch"}
