"""Orchestrator pieces that need no Ray: packing cells into trials, planning against the store."""

from __future__ import annotations

import pytest
from conftest import tiny_spec
from factories import finished_sweep

from augworth.orchestrator.plan import plan_sweep
from augworth.orchestrator.runner import MAX_CELLS_PER_TRIAL, pack_cells
from augworth.results import Store
from augworth.search_spaces import SpecError, parse_spec


@pytest.mark.parametrize("n, slots", [(1, 2), (7, 2), (90, 2), (1000, 2), (5000, 16)])
def test_packing_keeps_every_cell_once_in_order_with_a_short_tail(n, slots):
    chunks = pack_cells(list(range(n)), slots)
    assert [c for chunk in chunks for c in chunk] == list(range(n))
    sizes = [len(c) for c in chunks]
    assert max(sizes) <= MAX_CELLS_PER_TRIAL
    assert sizes == sorted(sizes, reverse=True)  # long trials first, short ones last
    assert sizes[-1] == 1  # the last trial holds one cell: no slot waits on a long chunk at the end
    assert len(chunks) <= 2 * slots * 8 + n // MAX_CELLS_PER_TRIAL  # few trials: start-up cost stays noise


def test_packing_honours_a_fixed_cells_per_trial():
    assert [len(c) for c in pack_cells(list(range(10)), 2, requested=4)] == [4, 4, 2]


def test_plan_subtracts_done_and_failed_cells(tmp_path):
    from factories import rows_for

    store = Store(tmp_path)
    plan = plan_sweep(tiny_spec("p"), "p.yaml", store)
    first, second = plan.cells[0], plan.cells[1]
    store.write_spec("p", plan.spec.to_yaml())
    store.write_cell("p", first.cell_key, rows_for(first))
    store.write_failure("p", second.cell_key, {"reason": "boom"})
    again = plan_sweep(tiny_spec("p"), "p.yaml", store)
    assert again.frozen == "same" and again.done == {first.cell_key} and again.failed == {second.cell_key}
    assert len(again.pending) == len(plan.cells) - 2
    retry = plan_sweep(tiny_spec("p"), "p.yaml", store, retry_failed=True)
    assert second.cell_key in {c.cell_key for c in retry.pending}


def test_an_existing_sweep_starts_ray_while_it_plans_only_where_cells_may_be_left(tmp_path):
    # orchestrator/startup.py: the guess from counts (no data loaded) must never call a sweep with cells left
    # finished; a finished sweep plans first and never starts Ray
    from factories import rows_for

    from augworth.orchestrator.startup import may_have_cells_to_run

    store = Store(tmp_path)
    plan = finished_sweep(store, tiny_spec("p"))
    assert not may_have_cells_to_run(plan.spec, store, retry_failed=False)
    assert may_have_cells_to_run(parse_spec(tiny_spec("p").replace("seeds: [0, 1]", "seeds: [0, 1, 2]"), "p.yaml"),
                                 store, retry_failed=False)  # --extend
    left = Store(tmp_path / "left")
    first, second = plan.cells[:2]
    left.write_spec("p", plan.spec.to_yaml())
    for cell in plan.cells[2:]:
        left.write_cell("p", cell.cell_key, rows_for(cell))
    left.write_failure("p", second.cell_key, {"reason": "boom"})
    assert may_have_cells_to_run(plan.spec, left, retry_failed=False)  # `first` is left
    left.write_cell("p", first.cell_key, rows_for(first))
    assert not may_have_cells_to_run(plan.spec, left, retry_failed=False)  # the failed one is not retried
    assert may_have_cells_to_run(plan.spec, left, retry_failed=True)


def test_any_caller_overlaps_planning_with_ray_only_where_torch_is_not_loaded():
    # orchestrator/startup.py: one path for the command line and a Python caller; the fork is decided by what
    # the process holds (torch's thread pools do not survive a fork), not by who called
    import subprocess
    import sys

    code = ("import sys\nfrom orchestrator.startup import worth_forking\nprint(worth_forking())\n"
            "import torch\nprint(worth_forking())\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False"]


def test_plan_refuses_a_changed_spec_unless_extended_to_a_superset(tmp_path):
    store = Store(tmp_path)
    store.write_spec("p", plan_sweep(tiny_spec("p"), "p.yaml", store).spec.to_yaml())
    bigger = tiny_spec("p").replace("seeds: [0, 1]", "seeds: [0, 1, 2]")
    with pytest.raises(SpecError, match="--extend"):
        plan_sweep(bigger, "p.yaml", store)
    assert plan_sweep(bigger, "p.yaml", store, extend=True).frozen == "extend"
    smaller = tiny_spec("p").replace("seeds: [0, 1]", "seeds: [0]")
    with pytest.raises(SpecError, match="superset"):
        plan_sweep(smaller, "p.yaml", store, extend=True)
    # execution settings are not part of the grid: changing them is the same sweep
    assert plan_sweep(tiny_spec("p", retries=5), "p.yaml", store).frozen == "same"


def test_extend_refuses_an_added_eval_set_on_finished_cells_and_a_label_with_a_new_meaning(tmp_path):
    store = Store(tmp_path)
    finished_sweep(store, tiny_spec("e"))
    added = tiny_spec("e").replace("eval_sets: [test, corrupted]", "eval_sets: [test, corrupted, {name: test, "
                                   "label: again, options: {}}]")
    with pytest.raises(SpecError, match="cannot add eval sets .again. to a sweep with finished cells.*evaluate"):
        plan_sweep(added, "e.yaml", store, extend=True)
    renamed = tiny_spec("e").replace("eval_sets: [test, corrupted]",
                                     "eval_sets: [test, {name: test, label: corrupted}]")
    with pytest.raises(SpecError, match="eval_sets\\[1\\].*'corrupted' is corrupted .* and test .* here"):
        plan_sweep(renamed, "e.yaml", store, extend=True)
    assert plan_sweep(tiny_spec("e"), "e.yaml", store).pending == []  # the same spec still plans


def test_a_label_whose_data_changed_since_its_rows_were_written_is_refused(tmp_path):
    # the rows of `test` were measured on other data than `test` is now (files under a root replaced, say)
    store = Store(tmp_path)
    from augworth.trainables.datasets import eval_set_fingerprint, load_dataset

    digits = load_dataset("digits")
    finished_sweep(store, tiny_spec("c"), {"test": "0" * 16, "corrupted": eval_set_fingerprint(digits, "corrupted")})
    with pytest.raises(SpecError, match="eval_sets\\[0\\].*'test' is not the set its stored rows were measured on"):
        plan_sweep(tiny_spec("c"), "c.yaml", store)


def test_status_tells_done_failed_running_and_missing_from_the_store_alone(tmp_path):
    import json
    import socket
    import subprocess
    import sys

    from factories import rows_for

    from augworth.orchestrator.lock import SweepLock
    from augworth.orchestrator.status import sweep_status

    store = Store(tmp_path)
    plan = plan_sweep(tiny_spec("st"), "st.yaml", store)
    store.write_grid("st", [{"cell_key": c.cell_key} | c.to_dict() for c in plan.cells])
    store.write_spec("st", plan.spec.to_yaml())
    done, failed, running = plan.cells[0], plan.cells[1], plan.cells[2]
    store.write_cell("st", done.cell_key, rows_for(done))
    store.write_failure("st", failed.cell_key, {"reason": "NonFiniteLoss: non-finite training loss\nmore"})
    store.write_running("st", {running.cell_key: {"host": "h", "since": 0}})
    with SweepLock(store, "st"):  # a live driver
        st = sweep_status(store, "st")
        assert st.totals == {"cells": 12, "done": 1, "failed": 1, "running": 1, "missing": 9}
        assert st.driver is not None and st.failed[0]["reason"] == "NonFiniteLoss: non-finite training loss"
        by_size = {r["data_size"]: r for r in st.by_size}
        assert sum(r["done"] for r in by_size.values()) == 1 and set(by_size) == {40, 80, 160}
    # the driver died: its running cells are missing, and the status says so
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / "st" / ".lock").write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout)}))
    st = sweep_status(store, "st")
    assert st.totals["running"] == 0 and st.totals["missing"] == 10 and st.driver is None
    assert "died" in st.notes[0]


def test_the_demo_keeps_the_cell_keys_it_had_before_the_paper_protocol_fields(tmp_path):
    """Keys computed by the code before views, invariance, subsets and accumulate existed (commit bee25de):
    new fields at their neutral defaults must not re-key a stored sweep."""
    import hashlib

    from augworth.search_spaces import preset_path

    # the demo as it was then (3 seeds; eval sets are not part of a key)
    text = preset_path("digits_demo").read_text().replace("seeds: [0, 1, 2, 3, 4]", "seeds: [0, 1, 2]").replace(
        "batch_size: 64}", "batch_size: 64, eval_every: 100}")
    plan = plan_sweep(text, "demo", Store(tmp_path))
    keys = sorted(c.cell_key for c in plan.cells)
    assert len(keys) == 90
    assert hashlib.sha256(",".join(keys).encode()).hexdigest()[:16] == "15181bfbcc0deaa3"


def test_gpu_hour_estimates_scale_with_the_image_size_from_the_registry_or_the_options():
    from augworth.orchestrator.estimate import estimate_gpu_hours
    from augworth.search_spaces import parse_spec

    def hours(dataset: str) -> float:
        return estimate_gpu_hours(parse_spec(tiny_spec().replace("{name: digits}", dataset)))

    digits = hours("{name: digits}")  # 16x16 by the data set registry's image_size
    assert hours("{name: synthetic, options: {image_size: 16}}") == pytest.approx(digits)
    # synthetic is 32x32 unless an option says otherwise: four times the pixels, ~four times the FLOPs
    assert 3.5 < hours("{name: synthetic}") / digits < 4.1


def test_a_plan_made_before_another_driver_froze_the_sweep_is_checked_again_under_the_lock(tmp_path):
    from augworth.orchestrator.lock import SweepLock
    from augworth.orchestrator.plan import plan_again_if_frozen_changed, plan_resume
    from augworth.orchestrator.runner import run_plan

    store = Store(tmp_path)
    mine = plan_sweep(tiny_spec("r"), "mine.yaml", store)
    theirs = plan_sweep(tiny_spec("r").replace("seeds: [0, 1]", "seeds: [5]"), "theirs.yaml", store)
    assert mine.frozen == theirs.frozen == "new"  # both planned before either froze the sweep
    store.write_spec("r", theirs.spec.to_yaml())  # the driver that took the lock first froze its grid
    frozen = store.read_spec("r")
    with pytest.raises(SpecError, match="already exists .* with a different spec"):
        run_plan(mine, store, show_progress=False)  # refused under the lock, before Ray or any write
    assert store.read_spec("r") == frozen and store.read_grid("r") is None
    with SweepLock(store, "r"):
        assert plan_again_if_frozen_changed(plan_sweep(tiny_spec("r").replace("seeds: [0, 1]", "seeds: [5]"),
                                                       "theirs.yaml", store), store).frozen == "same"
    # a resume planned on the frozen spec, which a driver extends before the resume takes the lock
    resume = plan_resume(store, "r")
    store.write_spec("r", plan_sweep(tiny_spec("r").replace("seeds: [0, 1]", "seeds: [5, 6]"), "more.yaml", store,
                                     extend=True).spec.to_yaml())
    with SweepLock(store, "r"):
        again = plan_again_if_frozen_changed(resume, store)
    assert again.frozen == "same" and {c.seed for c in again.cells} == {5, 6}


@pytest.mark.parametrize("torn", ["grid written, spec not", "spec written, grid not"])
def test_a_crash_between_the_spec_and_grid_writes_of_an_extend_heals_on_the_next_run(tmp_path, torn):
    from augworth.orchestrator.plan import plan_resume
    from augworth.orchestrator.runner import run_plan

    store = Store(tmp_path)
    small = finished_sweep(store, tiny_spec("x"))
    extended = tiny_spec("x").replace("seeds: [0, 1]", "seeds: [0, 1, 2]")
    big = plan_sweep(extended, "x.yaml", store, extend=True)
    if torn == "grid written, spec not":
        store.write_grid("x", [{"cell_key": c.cell_key} | c.to_dict() for c in big.cells])
        want = small.keys
    else:
        store.write_spec("x", big.spec.to_yaml())
        want = big.keys
    from factories import rows_for

    for cell in big.cells:  # every cell done, so the run below needs no Ray: it only puts the store right
        if cell.cell_key not in store.done_keys("x"):
            store.write_cell("x", cell.cell_key, rows_for(cell))
    run_plan(plan_resume(store, "x"), store, show_progress=False)
    assert set(store.read_grid("x").column("cell_key").to_pylist()) == want
