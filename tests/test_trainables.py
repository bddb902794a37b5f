"""Data sets, subsets, models, the training loop and the trainable's per-cell retries (no Ray needed)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from factories import make_cell

from augworth.trainables.datasets import DATASETS, EVAL_SETS, eval_set, load_dataset, subset_indices
from augworth.trainables.models import MODELS, create_model, init_seeded
from augworth.trainables.registry import Registry, UnknownNameError
from augworth.trainables.train import NonFiniteLoss, batch_indices, eval_steps, lr_factor, train_cell
from augworth.trainables.trainable import CellContext, run_cell


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def tiny_cell(digits, **over):
    return make_cell(dataset_fingerprint=digits.fingerprint, model="small_cnn", width=4, steps=8, batch_size=16,
                     eval_every=4, warmup_steps=2, data_size=60, augmentation="none", strength=None) \
        if not over else dataclasses.replace(tiny_cell(digits), **over)


# ----- registries -----------------------------------------------------------------------------------

def test_registry_lists_valid_names_on_unknown_and_rejects_duplicates():
    reg: Registry = Registry("widget")

    @reg.register("a", doc="x")
    def a(size: int = 1):
        return size

    assert reg.create("a", size=None) == 1  # None kwargs never override defaults
    with pytest.raises(UnknownNameError, match=r"unknown widget 'b' \(valid: a\)"):
        reg.create("b")
    with pytest.raises(ValueError, match="twice"):
        reg.register("a")(a)
    assert "digits" in DATASETS and {"test", "corrupted"} <= set(EVAL_SETS) and "small_cnn" in MODELS


def test_registry_rejects_misspelt_and_missing_metadata():
    reg: Registry = Registry("widget", meta=("strength_range",), required=("default_width",))
    with pytest.raises(TypeError, match=r"unknown metadata \['strength_rang'\].*keys: default_width, doc, "
                                        r"strength_range"):
        reg.register("a", default_width=1, strength_rang=(0, 1))
    with pytest.raises(TypeError, match=r"missing metadata \['default_width'\]"):
        reg.register("b", doc="no width")
    reg.register("c", default_width=2, strength_range=(0, 1), doc="fine")(lambda: None)
    assert reg.get("c").meta == {"default_width": 2, "strength_range": (0, 1), "doc": "fine"}
    with pytest.raises(TypeError, match="missing metadata"):
        MODELS.register("wide_cnn", doc="a model without its default width")


# ----- data -----------------------------------------------------------------------------------------

def test_digits_are_real_16x16_images_with_a_fixed_stratified_test_split(digits):
    assert digits.train_x.shape[1:] == (1, 16, 16) and digits.train_x.dtype == torch.float32
    assert digits.train_x.min() >= 0 and digits.train_x.max() <= 1
    assert len(digits.test_y) == 500 and digits.pool_size == 1797 - 500
    counts = torch.bincount(digits.test_y, minlength=10)
    assert counts.min() >= 48 and counts.max() <= 52  # stratified
    assert load_dataset.__wrapped__("digits").fingerprint == digits.fingerprint  # deterministic


def test_the_test_split_in_parts_is_disjoint_stratified_and_whole(digits):
    """A search may select on one part of the test split and confirm on another (search.confirm.eval_set)."""
    parts = [eval_set(digits, "test", options={"parts": 3, "part": k}) for k in range(3)]
    together = torch.cat([x.flatten(1) for x, _ in parts])
    assert sum(len(y) for _, y in parts) == len(digits.test_y)
    assert torch.equal(together.unique(dim=0), digits.test_x.flatten(1).unique(dim=0))  # disjoint and whole
    for _, y in parts:
        counts = torch.bincount(y, minlength=10)
        assert counts.max() - counts.min() <= 2  # every class in proportion
    assert torch.equal(parts[1][0], eval_set(digits, "test", options={"parts": 3, "part": 1})[0])
    for bad, names in (({"parts": 3, "part": 3}, "part"), ({"parts": 1, "part": 0}, "parts"),
                       ({"parts": 2}, "both"), ({"part": 0, "parts": 2, "colour": 1}, "colour")):
        with pytest.raises(ValueError, match=names):
            EVAL_SETS.create("test", data=digits, **bad)


def test_corrupted_eval_set_is_deterministic_and_differs_from_test(digits):
    x, y = eval_set(digits, "corrupted")
    x2, _ = EVAL_SETS.create("corrupted", data=digits)
    assert torch.equal(x, x2)
    assert len(y) == 5 * len(digits.test_y) and x.shape[1:] == digits.test_x.shape[1:]
    assert x.min() >= 0 and x.max() <= 1
    for k in range(5):  # every corruption changes the images
        block = x[k * 500 : (k + 1) * 500]
        assert (block - digits.test_x).abs().mean() > 0.01


def test_subsets_are_stratified_nested_and_depend_only_on_size_and_seed(digits):
    pool_share = torch.bincount(digits.train_y, minlength=10).double() / digits.pool_size
    previous = set()
    for size in (10, 37, 100, 400, 1000):
        idx = subset_indices(digits, size, seed=3)
        assert len(set(idx.tolist())) == size
        counts = torch.bincount(digits.train_y[idx], minlength=10).double()
        assert (counts - pool_share * size).abs().max() <= 1.0  # within one image of proportional
        assert counts.min() >= 1  # every class present from 10 images on
        assert previous <= set(idx.tolist())  # nested across sizes
        previous = set(idx.tolist())
    assert torch.equal(subset_indices(digits, 100, 3), subset_indices(digits, 100, 3))
    assert not torch.equal(subset_indices(digits, 100, 3), subset_indices(digits, 100, 4))
    with pytest.raises(ValueError):
        subset_indices(digits, digits.pool_size + 1, 0)


# ----- model and loop pieces ------------------------------------------------------------------------

def test_small_cnn_width_scales_parameters_and_init_depends_only_on_seed():
    small = create_model("small_cnn", width=4, in_channels=1, num_classes=10)
    big = create_model("small_cnn", width=8, in_channels=1, num_classes=10)
    assert sum(p.numel() for p in big.parameters()) > 3 * sum(p.numel() for p in small.parameters())
    a = init_seeded(create_model("small_cnn", width=4, in_channels=1, num_classes=10), 7)
    b = init_seeded(create_model("small_cnn", width=4, in_channels=1, num_classes=10), 7)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert a(torch.rand(2, 1, 16, 16)).shape == (2, 10)


def test_schedule_warms_up_linearly_then_decays_to_zero():
    f = [lr_factor(s, steps=100, warmup_steps=10) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:], strict=False)) and f[-1] < 0.01


def test_batches_cover_each_epoch_once_even_when_smaller_than_a_batch():
    gen = torch.Generator().manual_seed(0)
    batches = list(batch_indices(10, 4, steps=5, generator=gen))
    assert all(len(b) == 4 for b in batches)
    flat = torch.cat(batches)
    assert sorted(flat[:10].tolist()) == list(range(10))  # the first epoch is a permutation
    assert sorted(flat[10:20].tolist()) == list(range(10))
    assert eval_steps(10, 4) == [4, 8, 10] and eval_steps(10, 20) == [10]


# ----- training -------------------------------------------------------------------------------------

def test_train_cell_evaluates_every_eval_set_at_each_eval_step_and_the_true_last_step(digits):
    cell = tiny_cell(digits, steps=10, eval_every=4)
    result = train_cell(cell, digits, ["test", "corrupted"])
    seen = [(e.step, e.eval_set, e.final) for e in result.evaluations]
    assert seen == [(4, "test", False), (4, "corrupted", False), (8, "test", False), (8, "corrupted", False),
                    (10, "test", True), (10, "corrupted", True)]
    assert all(0 <= e.accuracy <= 1 and e.n_eval > 0 for e in result.evaluations)
    assert result.param_count > 0 and result.train_seconds > 0


def test_train_cell_is_deterministic_for_a_seed(digits):
    cell = tiny_cell(digits, augmentation="crop", strength=2.0)
    a = train_cell(cell, digits, ["test"]).evaluations[-1]
    b = train_cell(cell, digits, ["test"]).evaluations[-1]
    assert (a.accuracy, a.loss) == (b.accuracy, b.loss)


def test_a_diverging_cell_fails_with_a_non_finite_loss(digits):
    with pytest.raises(NonFiniteLoss, match="non-finite training loss"):
        train_cell(tiny_cell(digits, lr=1e12, warmup_steps=0), digits, ["test"])


def test_run_cell_retries_then_reports_a_failure_record(digits):
    cell = tiny_cell(digits, lr=1e12, warmup_steps=0)
    report = run_cell(cell, CellContext(eval_sets=("test",), retries=2))
    failure = report["cell_failure"]
    assert report["cell_key"] == cell.cell_key and "cell_rows" not in report
    assert failure["attempts"] == 3 and len(failure["errors"]) == 3
    assert "non-finite training loss" in failure["reason"] and "NonFiniteLoss" in failure["traceback"]


def test_run_cell_reports_rows_with_every_cell_field_and_provenance(digits):
    cell = tiny_cell(digits)
    report = run_cell(cell, CellContext(eval_sets=("test",), retries=0, code_revision="abc123"))
    rows = report["cell_rows"]
    assert len(rows) == 2 and rows[-1]["final"] and not rows[0]["final"]
    for name, value in cell.to_dict().items():
        assert rows[0][name] == value
    assert rows[0]["code_revision"] == "abc123" and rows[0]["torch_version"] == torch.__version__
    assert type(rows[0]["torch_version"]) is str  # a TorchVersion would make the driver import torch to unpickle it
    assert rows[0]["param_count"] > 0 and '"key_version":1' in rows[0]["config_json"]


def test_run_cell_refuses_data_that_changed_since_planning(digits):
    cell = tiny_cell(digits, dataset_fingerprint="0" * 16)
    report = run_cell(cell, CellContext(eval_sets=("test",), retries=0))
    assert "fingerprint" in report["cell_failure"]["reason"]


def test_a_cell_past_its_timeout_is_retried_then_recorded(digits):
    cell = tiny_cell(digits, steps=50)
    report = run_cell(cell, CellContext(eval_sets=("test",), retries=1, timeout_s=1e-6))
    failure = report["cell_failure"]
    assert failure["attempts"] == 2 and "CellTimeout" in failure["reason"] and "timeout_s" in failure["reason"]
    assert "cell_rows" in run_cell(cell, CellContext(eval_sets=("test",), retries=0, timeout_s=600))


@pytest.mark.parametrize("views", [{}, {"views": "fixed", "views_r": 2}], ids=["random views", "fixed views"])
def test_a_cell_interrupted_after_a_checkpoint_continues_to_the_same_result(digits, tmp_path, views):
    # fixed views are drawn again on resume, from their own stream: the same views as before the interruption
    from augworth.trainables.checkpoint import Checkpointer

    cell = tiny_cell(digits, steps=40, eval_every=10, augmentation="crop", strength=2.0, **views)
    reference = train_cell(cell, digits, ["test"])
    saved, loaded = [], []
    checkpoint = Checkpointer(str(tmp_path), cell.cell_key, every=16, on_save=saved.append, on_load=loaded.append)

    def killed_at_37(step: int) -> None:
        if step == 37:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_cell(cell, digits, ["test"], on_step=killed_at_37, checkpoint=checkpoint)
    assert saved == [16, 32]  # at the end of augmentation calls (16 steps each here)
    resumed = train_cell(cell, digits, ["test"], checkpoint=checkpoint)
    assert loaded == [32]
    assert [(e.step, e.accuracy, e.loss) for e in resumed.evaluations] == \
        [(e.step, e.accuracy, e.loss) for e in reference.evaluations]
    # the checkpoint stays until the driver has the rows in the store (then the driver deletes it)
    report = run_cell(cell, CellContext(eval_sets=("test",), checkpoint_every=16, checkpoint_dir=str(tmp_path)))
    assert "cell_rows" in report and (tmp_path / f"{cell.cell_key}.pt").exists()


def test_a_checkpoint_never_holds_a_diverged_state(digits, tmp_path, monkeypatch):
    # On a GPU the loss is read every 50 steps only; here too, so that the checkpoint at step 32 comes after
    # unchecked steps whose loss went NaN (the images turn NaN from the second augmentation call, step 17)
    from augworth.trainables import train
    from augworth.trainables.checkpoint import Checkpointer

    cpu = train.device_settings
    monkeypatch.setattr(train, "device_settings", lambda *a, **k: dataclasses.replace(cpu(*a, **k), check_every=50))
    calls = []

    def nan_after_the_first_call(x, generator):
        calls.append(len(x))
        return x if len(calls) == 1 else torch.full_like(x, float("nan"))

    cell = tiny_cell(digits, steps=48, eval_every=48)
    checkpoint = Checkpointer(str(tmp_path), cell.cell_key, every=16)
    with pytest.raises(NonFiniteLoss):
        train_cell(cell, digits, ["test"], augment=nan_after_the_first_call, checkpoint=checkpoint)
    assert calls[0] == 16 * cell.batch_size  # one call per 16 steps, as the checkpoint steps assume
    state = checkpoint.load()
    assert state["step"] == 16  # the last checkpoint before the divergence, not one after it
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def poisoned_checkpoint(digits, cell, folder):
    """A checkpoint at step 32 whose weights are NaN, as a run that diverged between loss checks left it."""
    from augworth.trainables.checkpoint import Checkpointer

    checkpoint = Checkpointer(str(folder), cell.cell_key, every=16)

    def killed_at_37(step: int) -> None:
        if step == 37:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_cell(cell, digits, ["test"], on_step=killed_at_37, checkpoint=checkpoint)
    state = checkpoint.load()
    state["model"] = {k: v.fill_(float("nan")) if v.is_floating_point() else v for k, v in state["model"].items()}
    checkpoint.save(state)
    return folder / f"{cell.cell_key}.pt"


def test_a_retry_after_a_divergence_starts_clean_and_a_failed_cell_leaves_no_checkpoint(digits, tmp_path):
    cell = tiny_cell(digits, steps=40, eval_every=10)
    events = []
    poisoned_checkpoint(digits, cell, tmp_path / "retry")
    context = CellContext(eval_sets=("test",), retries=1, checkpoint_every=16, checkpoint_dir=str(tmp_path / "retry"))
    report = run_cell(cell, context, report=events.append)
    assert report.get("attempts") == 2, report.get("cell_failure")  # the first attempt diverged, the retry did not
    assert [e["cell_resumed"] for e in events if "cell_resumed" in e] == [32]  # the retry did not resume
    assert report["cell_rows"][-1]["accuracy"] == \
        train_cell(cell, digits, ["test"]).evaluations[-1].accuracy  # the same as a clean run

    path = poisoned_checkpoint(digits, cell, tmp_path / "fail")
    context = dataclasses.replace(context, retries=0, checkpoint_dir=str(tmp_path / "fail"))
    assert "cell_failure" in run_cell(cell, context)
    assert not path.exists()  # `resume --retry-failed` will not start from it


def test_a_gpu_cell_on_a_worker_without_cuda_fails_with_that_reason(digits, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a CPU-only worker
    report = run_cell(tiny_cell(digits), CellContext(eval_sets=("test",), gpus_per_cell=1, retries=2))
    assert "no CUDA device" in report["cell_failure"]["reason"] and "cell_rows" not in report


def test_every_row_names_its_eval_set_by_name_options_and_content(digits):
    from augworth.trainables.datasets import eval_set_fingerprint

    result = train_cell(tiny_cell(digits), digits, ["test", "corrupted", {"label": "again", "name": "test"}])
    marks = {e.eval_set: e.eval_set_fingerprint for e in result.evaluations}
    assert marks["test"] == marks["again"] == eval_set_fingerprint(digits, "test")  # a label is not the identity
    assert marks["corrupted"] == eval_set_fingerprint(digits, "corrupted") != marks["test"]
    other = make_dataset_like(digits)
    assert eval_set_fingerprint(other, "test") != marks["test"]  # other images under the same name


def make_dataset_like(digits):
    from augworth.trainables.datasets import make_dataset

    return make_dataset("digits", digits.train_x, digits.train_y, digits.test_x.flip(-1), digits.test_y,
                        num_classes=10)


def test_the_cell_context_is_the_specs_settings_typed_and_frozen():
    from conftest import tiny_spec

    from augworth.search_spaces import parse_spec

    spec = parse_spec(tiny_spec(retries=3).replace("eval_sets: [test, corrupted]", "eval_sets: [test, corrupted]\n"
                                                   "probes: {grad_noise: true, samples: 64}"))
    context = CellContext.from_spec(spec, checkpoint_dir="/ckpt", code_revision="abc")
    assert [e["label"] for e in context.eval_sets] == ["test", "corrupted"]
    assert context.retries == 3 and context.code_revision == "abc" and context.checkpoint_dir == "/ckpt"
    assert context.probes.grad_noise and context.probes.batch_size == spec.budget.batch_size == 16
    assert context.probes.samples == 64 and context.probes.threshold == 1.0  # the spec's default, written once
    with pytest.raises(dataclasses.FrozenInstanceError):
        context.retries = 0
