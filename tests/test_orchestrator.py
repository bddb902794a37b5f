"""Orchestrator pieces that need no Ray: packing cells into trials, planning against the store."""

from __future__ import annotations

import os

import pytest
from conftest import tiny_spec
from factories import finished_sweep

from orchestrator.plan import plan_sweep
from orchestrator.runner import MAX_CELLS_PER_TRIAL, pack_cells
from results import Store
from search_spaces import SpecError, parse_spec


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

    from orchestrator.startup import may_have_cells_to_run

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


def test_one_driver_per_sweep_and_stale_locks_are_taken_over(tmp_path):
    import json
    import socket
    import subprocess
    import sys

    from orchestrator.lock import SweepLock, SweepLocked

    store = Store(tmp_path)
    with SweepLock(store, "s") as lock:
        with pytest.raises(SweepLocked, match=r"being run by pid \d+"):
            SweepLock(store, "s").acquire()
        assert SweepLock(store, "other").acquire().held  # other sweeps are free
    assert not (tmp_path / "s" / ".lock").exists()  # released

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / "s" / ".lock").write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout)}))
    with SweepLock(store, "s") as lock:  # the holder's pid is gone: stale, taken over
        assert lock.holder()["pid"] == lock.me["pid"]

    (tmp_path / "s" / ".lock").write_text(json.dumps({"host": "elsewhere", "pid": 1}))
    with pytest.raises(SweepLocked, match="remove .*/s/.lock"):
        SweepLock(store, "s").acquire()


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
    from trainables.datasets import eval_set_fingerprint, load_dataset

    digits = load_dataset("digits")
    finished_sweep(store, tiny_spec("c"), {"test": "0" * 16, "corrupted": eval_set_fingerprint(digits, "corrupted")})
    with pytest.raises(SpecError, match="eval_sets\\[0\\].*'test' is not the set its stored rows were measured on"):
        plan_sweep(tiny_spec("c"), "c.yaml", store)


CONTENDER = """
import sys
from results import Store
from orchestrator.lock import SweepLock, SweepLocked
store, lock = Store(sys.argv[1]), None
for line in sys.stdin:
    if line.strip() == "go":
        try:
            lock = SweepLock(store, "s").acquire()
            print("won", flush=True)
        except SweepLocked:
            print("lost", flush=True)
    else:
        if lock is not None:
            lock.release()
        lock = None
        print("released", flush=True)
"""


@pytest.mark.parametrize("start", ["free", "stale"])
def test_of_many_drivers_racing_for_a_sweep_exactly_one_takes_it(tmp_path, start):
    # real processes, started together by a line on their stdin, each holding what it won until all have tried
    import json
    import socket
    import subprocess
    import sys

    from conftest import ROOT

    env = os.environ | {"PYTHONPATH": str(ROOT)}
    contenders = [subprocess.Popen([sys.executable, "-c", CONTENDER, str(tmp_path)], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT) for _ in range(8)]
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / "s").mkdir()
    try:
        for _ in range(12):
            if start == "stale":  # a lock its driver left when it died on this host
                (tmp_path / "s" / ".lock").write_text(json.dumps({"host": socket.gethostname(),
                                                                   "pid": int(dead.stdout)}))
            for proc in contenders:
                proc.stdin.write("go\n")
                proc.stdin.flush()
            outcomes = [proc.stdout.readline().strip() for proc in contenders]
            assert outcomes.count("won") == 1, outcomes
            for proc in contenders:
                proc.stdin.write("release\n")
                proc.stdin.flush()
            assert [proc.stdout.readline().strip() for proc in contenders] == ["released"] * len(contenders)
            assert not (tmp_path / "s" / ".lock").exists()
    finally:
        for proc in contenders:
            proc.stdin.close()
            proc.wait(timeout=60)


def test_status_tells_done_failed_running_and_missing_from_the_store_alone(tmp_path):
    import json
    import socket
    import subprocess
    import sys

    from factories import rows_for

    from orchestrator.lock import SweepLock
    from orchestrator.status import sweep_status

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

    from search_spaces import preset_path

    # the demo as it was then (3 seeds; eval sets are not part of a key)
    text = preset_path("digits_demo").read_text().replace("seeds: [0, 1, 2, 3, 4]", "seeds: [0, 1, 2]").replace(
        "batch_size: 64}", "batch_size: 64, eval_every: 100}")
    plan = plan_sweep(text, "demo", Store(tmp_path))
    keys = sorted(c.cell_key for c in plan.cells)
    assert len(keys) == 90
    assert hashlib.sha256(",".join(keys).encode()).hexdigest()[:16] == "15181bfbcc0deaa3"


def test_gpu_hour_estimates_scale_with_the_image_size_from_the_registry_or_the_options():
    from orchestrator.estimate import estimate_gpu_hours
    from search_spaces import parse_spec

    def hours(dataset: str) -> float:
        return estimate_gpu_hours(parse_spec(tiny_spec().replace("{name: digits}", dataset)))

    digits = hours("{name: digits}")  # 16x16 by the data set registry's image_size
    assert hours("{name: synthetic, options: {image_size: 16}}") == pytest.approx(digits)
    # synthetic is 32x32 unless an option says otherwise: four times the pixels, ~four times the FLOPs
    assert 3.5 < hours("{name: synthetic}") / digits < 4.1
