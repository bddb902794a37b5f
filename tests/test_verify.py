"""Bad files in the store: `verify` finds them, readers skip them with a warning, quarantine moves them."""

from __future__ import annotations

import json
import os
import subprocess

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import CLI, ROOT
from factories import make_cell, rows_for

from augworth.results import Store, StoreWarning, connect, quarantine, read_results, verify


@pytest.fixture
def damaged(tmp_path):
    store = Store(tmp_path)
    good = [make_cell(seed=s) for s in range(4)]
    for c in good:
        store.write_cell("s", c.cell_key, rows_for(c))
    store.write_spec("s", "name: s\n")
    folder = tmp_path / "s" / "results"
    truncated = folder / f"{make_cell(seed=10).cell_key}.parquet"
    data = (folder / f"{good[0].cell_key}.parquet").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    wrong = make_cell(seed=11)
    wrong_path = folder / f"{wrong.cell_key}.parquet"
    pq.write_table(pa.table({"sweep": ["s"], "cell_key": [wrong.cell_key], "step": [1], "final": [True],
                             "eval_set": ["test"], "accuracy": ["high"]}), wrong_path)
    misnamed = folder / f"{make_cell(seed=12).cell_key}.parquet"
    misnamed.write_bytes((folder / f"{good[1].cell_key}.parquet").read_bytes())
    return store, good, {str(truncated), str(wrong_path), str(misnamed)}


def test_verify_reports_truncated_wrong_schema_and_misnamed_files(damaged):
    store, good, bad = damaged
    report = verify(store, "s")
    assert set(report) == bad
    reasons = " | ".join(report.values())
    assert "unreadable" in reasons and "'accuracy' is string" in reasons and "name or the manifest" in reasons


def test_query_and_analysis_skip_bad_files_with_a_warning_naming_them(damaged):
    store, good, bad = damaged
    with pytest.warns(StoreWarning) as caught:
        con = connect(store, "s")
    assert {str(w.message).split(": ", 1)[0].removeprefix("skipping store file ") for w in caught} == bad
    assert con.execute("SELECT count(DISTINCT cell_key) FROM results").fetchone()[0] == 4
    with pytest.warns(StoreWarning):
        frame = read_results(store, "s", final_only=True)
    assert set(frame["cell_key"]) == {c.cell_key for c in good}


def test_a_copy_under_another_cells_name_alone_is_seen_by_no_reader_and_leaves_that_cell_to_run(tmp_path):
    # no other damage: the view's schema looks right, so only the content check can catch it
    store = Store(tmp_path)
    good = [make_cell(seed=s) for s in range(4)]
    for c in good:
        store.write_cell("s", c.cell_key, rows_for(c))
    copy = tmp_path / "s" / "results" / f"{make_cell(seed=12).cell_key}.parquet"
    copy.write_bytes((tmp_path / "s" / "results" / f"{good[1].cell_key}.parquet").read_bytes())
    with pytest.warns(StoreWarning, match=f"skipping store file {copy}: holds the rows of cell.s. {good[1].cell_key}"):
        con = connect(store, "s")
    assert con.execute("SELECT count(*) FROM results").fetchone()[0] == sum(len(rows_for(c)) for c in good)
    assert store.done_keys("s") == {c.cell_key for c in good}  # the cell the copy is named after still runs
    with pytest.warns(StoreWarning):
        frame = read_results(store, "s", final_only=True)
    assert set(frame["cell_key"]) == {c.cell_key for c in good} and not frame.duplicated(["cell_key", "eval_set"]).any()
    assert set(verify(store, "s")) == {str(copy)}


def test_quarantine_moves_bad_files_so_their_cells_count_as_missing(damaged, tmp_path):
    store, good, bad = damaged
    moved = quarantine(store, "s", verify(store, "s"))
    assert len(moved) == 3 and all(os.path.exists(p) for p in moved)
    assert verify(store, "s") == {} and store.done_keys("s") == {c.cell_key for c in good}


def test_verify_from_the_command_line(damaged, tmp_path):
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    run = lambda *a: subprocess.run([*CLI, *a, "--store", str(tmp_path)],  # noqa: E731
                                    capture_output=True, text=True, env=env, timeout=120)
    query = run("query", "s", "SELECT count(DISTINCT cell_key) AS n FROM results", "--json")
    assert query.returncode == 0 and json.loads(query.stdout) == [{"n": 4}]
    assert query.stderr.count("augworth: warning: skipping store file") == 3
    found = run("verify", "s")
    assert found.returncode == 3 and "3 bad" in found.stdout
    from augworth.orchestrator.lock import SweepLock

    with SweepLock(damaged[0], "s"):  # a driver is running the sweep: no files move under it
        locked = run("verify", "s", "--quarantine")
    assert locked.returncode == 2 and f"is being run by pid {os.getpid()}" in locked.stderr
    assert not (tmp_path / "s" / "quarantine").exists()
    fixed = run("verify", "s", "--quarantine")
    assert fixed.returncode == 0 and "moved 3" in fixed.stdout
    assert run("verify", "s").returncode == 0
