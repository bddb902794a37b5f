"""A tiny sweep on a real local Ray, read back from the store with plain DuckDB and pandas."""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest
from conftest import tiny_spec

from augworth.orchestrator.plan import plan_sweep
from augworth.orchestrator.runner import run_plan
from augworth.results import Store, read_results

pytestmark = pytest.mark.usefixtures("ray_local")


def test_a_tiny_sweep_lands_in_the_store_once_per_cell(tmp_path):
    store = Store(tmp_path / "store")
    plan = plan_sweep(tiny_spec("e2e"), "tiny.yaml", store)
    assert len(plan.cells) == 12 and len(plan.pending) == 12 and plan.frozen == "new"

    summary = run_plan(plan, store, show_progress=False)
    assert (summary.done, summary.failed, summary.exit_code) == (12, 0, 0)

    folder = tmp_path / "store" / "e2e" / "results"
    assert sorted(p.stem for p in folder.glob("*.parquet")) == sorted(plan.keys)
    # plain DuckDB and pandas read the folder without our code
    per_cell = duckdb.sql(
        f"SELECT cell_key, count(*) AS n, sum(final::INT) AS finals FROM read_parquet('{folder}/*.parquet') "
        "GROUP BY cell_key"
    ).df()
    assert len(per_cell) == 12
    assert (per_cell["n"] == 4).all()  # 2 eval sets x evaluations at steps 6 and 12
    assert (per_cell["finals"] == 2).all()
    df = pd.read_parquet(folder)
    final = df[df["final"]]
    assert set(final["step"]) == {12} and set(final["eval_set"]) == {"test", "corrupted"}
    assert set(df["augmentation"]) == {"none", "crop"} and sorted(df["data_size"].unique()) == [40, 80, 160]
    assert df["accuracy"].between(0, 1).all() and (df["sweep"] == "e2e").all()

    # running the same sweep again skips every done cell: nothing is re-run or rewritten
    mtimes = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.parquet")}
    again = plan_sweep(tiny_spec("e2e"), "tiny.yaml", store)
    assert again.frozen == "same" and again.pending == []
    assert run_plan(again, store, show_progress=False).done == 0
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("*.parquet")} == mtimes


def test_diverging_cells_are_retried_then_recorded_and_the_sweep_exits_3(tmp_path):
    store = Store(tmp_path / "store")
    plan = plan_sweep(tiny_spec("nan", lr=1e12, retries=1), "nan.yaml", store)
    summary = run_plan(plan, store, show_progress=False)
    assert summary.failed == 12 and summary.done == 0 and summary.exit_code == 3
    failures = store.failures("nan")
    assert set(failures) == plan.keys
    record = next(iter(failures.values()))
    assert record["attempts"] == 2 and "non-finite training loss" in record["reason"]
    assert record["config"]["lr"] == 1e12 and store.done_keys("nan") == set()
    from augworth.orchestrator.status import sweep_status

    status = sweep_status(store, "nan")
    assert status.totals == {"cells": 12, "done": 0, "failed": 12, "running": 0, "missing": 0}
    assert all("non-finite training loss" in f["reason"] for f in status.failed)
    assert not (tmp_path / "store" / "nan" / "running.json").exists() and status.driver is None
    # failed cells are not re-run unless asked
    assert plan_sweep(tiny_spec("nan", lr=1e12, retries=1), "nan.yaml", store).pending == []
    assert len(plan_sweep(tiny_spec("nan", lr=1e12, retries=1), "nan.yaml", store, retry_failed=True).pending) == 12


def test_cells_that_raise_diverge_or_time_out_are_retried_recorded_and_the_rest_done(tmp_path):
    import sys

    spec = tiny_spec("failing").replace(
        "  - {policy: crop, strength: [1]}",
        "  - {policy: boom, strength: 1}\n  - {policy: poison, strength: 1}\n  - {policy: slow, strength: 5}",
    ).replace("data_sizes: [40, 80, 160]", "data_sizes: [40]").replace("seeds: [0, 1]", "seeds: [0]").replace(
        "cells_per_trial: 3}", "cells_per_trial: 1, timeout_s: 2, plugins: [augworth_test_plugin]}")
    store = Store(tmp_path / "store")
    plan = plan_sweep(spec, "failing.yaml", store)
    assert "augworth_test_plugin" in sys.modules and len(plan.cells) == 4
    summary = run_plan(plan, store, show_progress=False)
    assert (summary.done, summary.failed, summary.exit_code) == (1, 3, 3)
    reasons = {r["config"]["augmentation"]: r for r in store.failures("failing").values()}
    assert "boom: this augmentation always raises" in reasons["boom"]["reason"]
    assert "non-finite training loss" in reasons["poison"]["reason"]
    assert "CellTimeout" in reasons["slow"]["reason"]
    assert all(r["attempts"] == 2 for r in reasons.values())  # retries: 1
    assert read_results(store, "failing")["augmentation"].unique().tolist() == ["none"]


def test_a_sweep_in_several_tune_rounds_keeps_weights_from_which_evaluate_adds_rows_once(tmp_path, monkeypatch):
    """One sweep (a Tune run costs seconds here) for two behaviours: a sweep larger than one Tune round runs in
    rounds with every cell once; and kept weights let `evaluate` add a new eval set to finished cells."""
    import augworth.orchestrator.runner as runner
    from augworth.orchestrator.evaluate import evaluate_sweep, parse_eval_set
    from augworth.results import compact
    from augworth.search_spaces import SpecError, parse_spec

    monkeypatch.setattr(runner, "MAX_TRIALS_PER_FIT", 1)  # 6 cells, 3 per trial: 2 trials in 2 rounds
    spec = tiny_spec("kept").replace("seeds: [0, 1]", "seeds: [0]").replace(
        "cells_per_trial: 3}", "cells_per_trial: 3, keep_weights: true}")
    store = Store(tmp_path / "store")
    plan = plan_sweep(spec, "kept.yaml", store)
    assert run_plan(plan, store, show_progress=False).done == 6 and store.done_keys("kept") == plan.keys
    weights = tmp_path / "store" / "kept" / "weights"
    assert sorted(p.stem for p in weights.glob("*.pt")) == sorted(plan.keys)
    compact(store, "kept")  # cells in a compacted file: evaluate rewrites it without them
    before = read_results(store, "kept")

    again = parse_eval_set("{name: test, label: test_again}")  # the same images under a new label
    report = evaluate_sweep(store, "kept", [again])
    assert (report.evaluated, report.rows_added, report.had_them, report.no_weights) == (6, 6, 0, [])
    after = read_results(store, "kept")
    assert len(after) == len(before) + 6 and not after.duplicated(["cell_key", "step", "eval_set"]).any()
    final = after[after["final"]].set_index(["cell_key", "eval_set"])
    # the kept weights are the trained model's final ones: the same images give exactly the logged numbers
    for column in ("accuracy", "loss", "train_seconds", "step", "eval_set_fingerprint"):
        assert final.xs("test_again", level=1)[column].equals(final.xs("test", level=1)[column]), column
    assert store.done_keys("kept") == plan.keys and len(after[after["eval_set"] == "test_again"]) == 6
    frozen = parse_spec(store.read_spec("kept"), "spec.yaml")
    assert [r["label"] for r in frozen.eval_requests()] == ["test", "corrupted", "test_again"]

    # again: nothing to do, nothing rewritten; a label that would mean another set is refused before any write
    mtimes = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "store" / "kept" / "results").iterdir()}
    assert evaluate_sweep(store, "kept", [again]).had_them == 6
    with pytest.raises(SpecError, match="'test_again' is test .* and corrupted"):
        evaluate_sweep(store, "kept", [parse_eval_set("{name: corrupted, label: test_again}")])
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "store" / "kept" / "results").iterdir()} == mtimes
    # the user's spec file lacks the added set: `run` says why it differs
    with pytest.raises(SpecError, match="only its eval sets differ: `augworth evaluate`"):
        plan_sweep(spec, "kept.yaml", store)
