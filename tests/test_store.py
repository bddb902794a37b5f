"""The Parquet store: atomic writes, the fixed schema, done keys, readers without our code. The store's contract is
run over each root kind whose files a test can look at on disk (`root`): a local path and the same folder as a
`file://` URI; S3 runs in test_object_store.py."""

from __future__ import annotations

import os

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest
from factories import make_cell, rows_for

from augworth.results import GROUP_COLUMNS, RESULT_COLUMNS, RESULT_SCHEMA, TREATMENT_COLUMNS, Store, StoreError, connect
from augworth.search_spaces import CELL_FIELDS


@pytest.fixture(params=["path", "file-uri"])
def root(request, tmp_path):
    """A store root over `tmp_path`: the folder itself, or the same folder as a file:// URI."""
    return tmp_path if request.param == "path" else f"file://{tmp_path}"


def test_every_cell_field_has_a_typed_column():
    assert set(CELL_FIELDS) <= set(RESULT_COLUMNS)
    assert set(TREATMENT_COLUMNS) <= set(RESULT_COLUMNS) and set(GROUP_COLUMNS) <= set(RESULT_COLUMNS)
    assert not set(TREATMENT_COLUMNS) & set(GROUP_COLUMNS)
    for name in ("schema_version", "cell_key", "step", "final", "eval_set", "accuracy", "host", "code_revision",
                 "config_json", "created_at", "torch_version", "augworth_version", "dataset_fingerprint"):
        assert name in RESULT_COLUMNS


def test_write_cell_round_trips_in_the_fixed_schema(root, tmp_path):
    store = Store(root)
    cell = make_cell()
    path = store.write_cell("s1", cell.cell_key, rows_for(cell))
    assert path.endswith(f"/s1/results/{cell.cell_key}.parquet")
    table = pq.read_table(path)
    assert table.schema.equals(RESULT_SCHEMA, check_metadata=False)
    assert table.num_rows == 4
    df = table.to_pandas()
    assert set(df["cell_key"]) == {cell.cell_key} and set(df["sweep"]) == {"s1"}
    assert df["strength"].tolist() == [2.0] * 4 and df["final"].sum() == 2


def test_rewriting_a_done_cell_replaces_it_and_leaves_no_temp_files(root, tmp_path):
    store = Store(root)
    cell = make_cell()
    store.write_cell("s1", cell.cell_key, rows_for(cell, n_steps=1))
    store.write_cell("s1", cell.cell_key, rows_for(cell, n_steps=3))
    files = os.listdir(tmp_path / "s1" / "results")
    assert files == [f"{cell.cell_key}.parquet"]  # one file, no duplicate, no *.tmp left behind
    assert store.read_cells("s1", [cell.cell_key]).num_rows == 6


def test_a_failed_write_leaves_nothing_visible(root, tmp_path):
    store = Store(root)
    cell = make_cell()
    bad = rows_for(cell)
    bad[0]["not_a_column"] = 1
    with pytest.raises(ValueError, match="not_a_column"):
        store.write_cell("s1", cell.cell_key, bad)
    assert store.done_keys("s1") == set()
    bad = rows_for(cell)
    bad[1]["accuracy"] = "high"  # wrong type: pyarrow refuses before anything is written
    with pytest.raises((TypeError, ValueError)):  # pyarrow's ArrowTypeError / ArrowInvalid
        store.write_cell("s1", cell.cell_key, bad)
    assert not (tmp_path / "s1" / "results").exists() or os.listdir(tmp_path / "s1" / "results") == []


def test_done_keys_come_from_file_names_and_ignore_temp_files(root, tmp_path):
    store = Store(root)
    cells = [make_cell(seed=s) for s in range(3)]
    for c in cells:
        store.write_cell("s1", c.cell_key, rows_for(c))
    (tmp_path / "s1" / "results" / ".deadbeef.parquet.1234.tmp").write_bytes(b"partial")
    assert store.done_keys("s1") == {c.cell_key for c in cells}
    assert store.done_keys("other") == set()


def test_sweeps_are_isolated_and_plain_readers_work(root, tmp_path):
    store = Store(root)
    for sweep, n in (("a", 2), ("b", 3)):
        for s in range(n):
            c = make_cell(seed=s)
            store.write_cell(sweep, c.cell_key, rows_for(c))
    folder = tmp_path / "a" / "results"
    # plain DuckDB, pandas and polars, without our code
    n = duckdb.sql(f"SELECT count(*) FROM read_parquet('{folder}/*.parquet')").fetchall()[0][0]
    assert n == 2 * 4
    assert len(pd.read_parquet(folder)) == 8
    import polars as pl

    assert pl.read_parquet(f"{folder}/*.parquet").height == 8
    assert connect(store, "b").execute("SELECT count(DISTINCT cell_key) FROM results").fetchone()[0] == 3


def test_connect_on_an_empty_sweep_gives_an_empty_view(root, tmp_path):
    con = connect(Store(root), "nothing")
    assert con.execute("SELECT count(*) FROM results").fetchone()[0] == 0
    assert "accuracy" in [d[0] for d in con.execute("SELECT * FROM results").description]


def test_failures_are_recorded_and_cleared(root, tmp_path):
    store = Store(root)
    store.write_failure("s1", "abc", {"reason": "non-finite training loss (nan) at step 3"})
    assert store.failures("s1")["abc"]["reason"].startswith("non-finite")
    store.clear_failure("s1", "abc")
    assert store.failures("s1") == {}


@pytest.mark.parametrize("name", ["..", "../escape", "/abs", "a/b", "", ".hidden", "x" * 65, "a b"])
def test_a_sweep_name_cannot_escape_the_root(tmp_path, name):
    with pytest.raises(StoreError, match="bad sweep name"):
        Store(tmp_path).has_sweep(name)


def test_spec_is_frozen_atomically(root, tmp_path):
    store = Store(root)
    assert not store.has_sweep("s1")
    store.write_spec("s1", "name: s1\n")
    assert store.has_sweep("s1") and store.read_spec("s1") == "name: s1\n"
    with pytest.raises(StoreError, match="no sweep"):
        store.read_spec("s2")


def test_a_sweep_folder_that_links_out_of_the_root_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    (root / "s").symlink_to(outside, target_is_directory=True)
    with pytest.raises(StoreError, match="symbolic link"):
        Store(root).write_spec("s", "name: s\n")
    assert list(outside.iterdir()) == []


def test_a_local_write_fsyncs_the_file_then_its_folder_before_and_after_the_rename(tmp_path, monkeypatch):
    # a rename alone survives a crashed process, not a power loss: the data and then the rename must be on disk
    folder = tmp_path / "s" / "results"
    synced: list[tuple[str, bool]] = []  # (what was synced, whether the cell's file had its name by then)
    real_fsync = os.fsync

    def recording(fd: int) -> None:
        synced.append((os.readlink(f"/proc/self/fd/{fd}"), any(folder.glob("*.parquet"))))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording)
    cell = make_cell()
    Store(tmp_path).write_cell("s", cell.cell_key, rows_for(cell))
    (temp, before), (synced_folder, after) = synced
    assert temp.startswith(f"{folder}/.{cell.cell_key}.parquet.") and temp.endswith(".tmp") and not before
    assert synced_folder == str(folder) and after
