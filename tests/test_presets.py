"""The paper's presets: every one lists, plans and runs its `--smoke` scale-down on one shared local Ray."""

from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner

from augworth.analysis import exchange_rates, plot_effective_samples, plot_scaling_curves
from augworth.orchestrator.cli import app
from augworth.orchestrator.plan import plan_sweep
from augworth.orchestrator.runner import run_plan
from augworth.orchestrator.status import sweep_status
from augworth.results import Store, read_results
from augworth.search_spaces import apply_smoke, grid_size, load_spec, preset_names, preset_path

PAPER = [name for name in preset_names() if name.startswith("paper_")]
# fig0's scale-down is fig2's with a subset of its policies (same data, model, views, eval sets): planned here,
# run as fig2 (each run costs its Tune workers' start, ~10 s)
RUN = [name for name in PAPER if name != "paper_fig0_baselines"]
SMOKE_SECONDS: dict[str, float] = {}  # printed at the end of the module (measured, never asserted)


@pytest.fixture(scope="module", autouse=True)
def _report_smoke_times(ray_local):
    yield
    if SMOKE_SECONDS:
        print("\nsmoke wall seconds (shared Ray):", json.dumps({k: round(v, 1) for k, v in SMOKE_SECONDS.items()}))


def test_there_are_the_seven_paper_presets():
    assert sorted(["paper_fig0_baselines", "paper_fig1_repetitions", "paper_fig2_policies",
                            "paper_fig3a_width", "paper_fig3b_models", "paper_fig4_invariance",
                            "paper_stochasticity"]) == PAPER


def test_fig0s_scale_down_is_fig2s_with_fewer_policies(tmp_path):
    fig0, fig2 = (apply_smoke(load_spec(preset_path(n))) for n in ("paper_fig0_baselines", "paper_fig2_policies"))
    assert {a.policy for a in fig0.augmentations} < {a.policy for a in fig2.augmentations}
    same = ("dataset", "model", "views", "invariance", "budget", "optimizer", "eval_sets", "probes", "execution")
    assert all(getattr(fig0, k) == getattr(fig2, k) for k in same)
    plan = plan_sweep(fig0.to_yaml(), "fig0 (smoke)", Store(tmp_path / "store"))
    assert len(plan.cells) == grid_size(fig0) and not (tmp_path / "store").exists()


@pytest.mark.parametrize("name", RUN)
def test_the_smoke_scale_down_runs_every_cell_of_its_grid(name, tmp_path):
    spec = apply_smoke(load_spec(preset_path(name)))
    store = Store(tmp_path / "store")
    plan = plan_sweep(spec.to_yaml(), f"{name} (smoke)", store)
    assert len(plan.cells) == grid_size(spec)
    t0 = time.perf_counter()
    summary = run_plan(plan, store, show_progress=False)
    SMOKE_SECONDS[name] = time.perf_counter() - t0
    assert (summary.done, summary.failed, summary.exit_code) == (len(plan.cells), 0, 0)

    rows = read_results(store, spec.name)
    assert set(rows["cell_key"]) == plan.keys
    assert rows["param_count"].gt(0).all()
    full = load_spec(preset_path(name))
    # the scale-down keeps the structure of the full grid: its policies, views, invariances, models
    assert set(rows["augmentation"]) <= {a.policy for a in full.augmentations}
    assert set(rows["views"]) == {v.mode for v in spec.views}
    assert set(rows["invariance"]) == set(spec.invariance)
    assert set(rows["model"]) == {m.name for m in spec.models()}
    probed = rows["grad_noise"].notna()
    if spec.probes is not None:
        assert set(rows.loc[probed, "step"]) == set(spec.probes.steps)
        assert rows.loc[probed, "flatness"].notna().all() and rows.loc[probed, "hessian_top_eig"].notna().all()
        shown = CliRunner().invoke(app, ["analyze", spec.name, "--store", str(tmp_path / "store"),
                                         "--out", str(tmp_path / "figures")])
        assert shown.exit_code == 0, shown.output
        assert "probes on un-augmented training images" in shown.output and "same_batch 2" in shown.output
    else:
        assert not probed.any()
    final = rows[rows["final"] & (rows["eval_set"] == "test")]
    rates = exchange_rates(final)  # too few sizes to fit: reported, must not fail, nor must the pictures
    plot_scaling_curves(final, rates, tmp_path / "scaling.png", eval_set="test")
    plot_effective_samples(rates, tmp_path / "effective.png", eval_set="test")
    status = sweep_status(store, spec.name)
    assert status.totals["done"] == len(plan.cells)
    for column, values in (("views", spec.views), ("invariance", spec.invariance), ("model", spec.models())):
        assert (column in status.treatment_columns) == (len(values) > 1)  # status tells treatments apart


def test_fig4_leaves_out_flip_for_flip_invariant_models_and_plan_warns_where_a_spec_does_not(tmp_path):
    spec = apply_smoke(load_spec(preset_path("paper_fig4_invariance")))
    plan = plan_sweep(spec.to_yaml(), "fig4 (smoke)", Store(tmp_path))
    assert not plan.notes and not [c for c in plan.cells if c.augmentation == "flip" and c.invariance != "none"]
    assert [c for c in plan.cells if c.augmentation == "flip"]  # flip augmentation of the plain model stays
    every = plan_sweep(spec.model_copy(update={"exclude": []}).to_yaml(), "fig4 without exclude", Store(tmp_path))
    assert len(every.notes) == 2 and every.notes[0].startswith("1 cells of flip with invariance average train like "
                                                               "none with average")


def test_presets_lists_cells_and_gpu_hours():
    result = CliRunner().invoke(app, ["presets", "--json"])
    assert result.exit_code == 0, result.output
    listed = {row["preset"]: row for row in json.loads(result.output)}
    assert set(listed) == set(preset_names())
    for name in PAPER:
        assert listed[name]["cells"] == grid_size(load_spec(preset_path(name))) > 0
        assert listed[name]["gpu_hours"] > 0 and listed[name]["smoke"]
    # wider models cost more: the width preset's estimate exceeds the same grid at width 64 only
    assert listed["paper_fig3a_width"]["gpu_hours"] > listed["paper_fig4_invariance"]["gpu_hours"] / 3
    shown = CliRunner().invoke(app, ["presets", "paper_fig2_policies"])
    assert shown.exit_code == 0 and "randaugment_crop_flip" in shown.output
    unknown = CliRunner().invoke(app, ["presets", "paper_fig9"])
    assert unknown.exit_code == 2 and "unknown preset 'paper_fig9'" in unknown.output


def test_a_full_preset_without_its_data_is_bad_input_naming_the_root(tmp_path):
    result = CliRunner().invoke(app, ["run", "paper_fig2_policies", "--dry-run", "--store", str(tmp_path)])
    assert result.exit_code == 2
    assert "dataset.root" in result.output and "/data/CINIC-10" in result.output
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_a_paper_preset_runs_on_files_in_the_real_formats(tmp_path):
    """What a newcomer does: take a preset, point its roots at CINIC-10, CIFAR-10 and CIFAR-10-C (here small
    files in the released formats), scale it to the machine, run. The loaders are the real ones."""
    from formats import write_cifar10, write_cifar10_1, write_cifar10c, write_cinic10

    write_cinic10(tmp_path / "CINIC-10", n_per_class_per_split=3, n_cifar_per_class=1, n_duplicates=2)
    write_cifar10(tmp_path / "cifar10", n_train_per_batch=2, n_test=20)
    write_cifar10c(tmp_path / "CIFAR-10-C", n=6)
    write_cifar10_1(tmp_path / "CIFAR-10.1", n=12)
    data = load_spec(preset_path("paper_fig2_policies")).model_dump(mode="json", exclude_none=True)
    data["dataset"]["root"] = str(tmp_path / "CINIC-10")
    data["dataset"]["options"] |= {"holdout": 20, "cache_dir": str(tmp_path / "cache")}
    data["eval_sets"][1]["root"] = str(tmp_path / "cifar10")
    data["eval_sets"][2]["root"] = str(tmp_path / "CIFAR-10-C")
    data["eval_sets"].append({"name": "cifar10_1", "root": str(tmp_path / "CIFAR-10.1")})
    data |= {"model": {"name": "resnet18", "width": 2}, "data_sizes": [20, 40], "seeds": [0],
             "budget": {"steps": 4, "batch_size": 8}, "optimizer": {"warmup_steps": 1},
             "execution": {"retries": 0}}
    del data["smoke"]
    from augworth.search_spaces import Spec

    spec = Spec.model_validate(data)
    store = Store(tmp_path / "store")
    plan = plan_sweep(spec.to_yaml(), "fig2.yaml", store)
    assert len(plan.cells) == 8 * 2
    summary = run_plan(plan, store, show_progress=False)
    assert (summary.done, summary.failed) == (16, 0)
    rows = read_results(store, spec.name, final_only=True)
    assert set(rows["eval_set"]) == {"test", "cifar10", "cifar10c_s3", "cifar10_1"}
    assert set(rows.groupby("eval_set")["n_eval"].first().items()) == {
        ("test", 20), ("cifar10", 20), ("cifar10c_s3", 15 * 6), ("cifar10_1", 12)}
    assert set(rows["subset"]) == {"independent"} and rows["param_count"].gt(0).all()
