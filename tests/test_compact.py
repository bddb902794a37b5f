"""Compaction: the same rows in fewer files, each cell counted once through any crash and any re-write."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from collections import Counter
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import CLI
from factories import make_cell, rows_for

from augworth.results import MANIFEST_NAME, RESULT_SCHEMA, Store, StoreError, compact, connect, read_results
from augworth.results import compaction as compact_steps

ROOT = Path(__file__).resolve().parents[1]
FILE_ROWS = 20  # 6 rows a cell: a few compacted files from a dozen cells
SORT = ["cell_key", "step", "eval_set"]


def fill(store: Store, sweep: str = "s", seeds=range(4), sizes=(50, 100, 200), n_steps: int = 3) -> list[str]:
    keys = []
    for seed, size in itertools.product(seeds, sizes):
        cell = make_cell(seed=seed, data_size=size)
        store.write_cell(sweep, cell.cell_key, rows_for(cell, n_steps=n_steps))
        keys.append(cell.cell_key)
    return keys


def frame(store: Store, sweep: str = "s") -> pd.DataFrame:
    """Every row readers see through the store, in a canonical order."""
    return read_results(store, sweep).sort_values(SORT, ignore_index=True)


def rows_per_cell(df: pd.DataFrame) -> Counter:
    return Counter(df["cell_key"])


def folder_of(root: Path, sweep: str = "s") -> Path:
    return root / sweep / "results"


def plain_readers(folder: Path) -> dict[str, Counter]:
    """Rows per cell as pandas, DuckDB and polars see the folder, without our code."""
    import polars as pl

    glob = f"{folder}/*.parquet"
    return {
        "pandas": rows_per_cell(pd.read_parquet(folder)),
        "duckdb": Counter(dict(
            duckdb.sql(f"SELECT cell_key, count(*) FROM read_parquet('{glob}') GROUP BY ALL").fetchall())),
        "polars": Counter(pl.read_parquet(glob)["cell_key"].to_list()),
    }


def names(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def assert_tidy(folder: Path) -> None:
    """What a completed compaction leaves: compacted files and the manifest, nothing else."""
    left = [n for n in names(folder) if n != MANIFEST_NAME and not n.startswith("compact-")]
    assert left == [], left


# ----- a completed compaction -----------------------------------------------------------------------


@pytest.fixture(params=["path", "file-uri"])
def root(request, tmp_path):
    """A store root over `tmp_path`: the folder itself, or the same folder as a file:// URI (test_store.py)."""
    return tmp_path if request.param == "path" else f"file://{tmp_path}"


def test_compaction_keeps_rows_and_done_keys_in_fewer_sorted_files(root, tmp_path):
    store = Store(root)
    keys = fill(store)
    before, done = frame(store), store.done_keys("s")

    report = compact(store, "s", file_rows=FILE_ROWS, row_group_rows=8)

    pd.testing.assert_frame_equal(frame(store), before)
    assert store.done_keys("s") == done == set(keys)
    folder = folder_of(tmp_path)
    assert_tidy(folder)
    parquet = [n for n in names(folder) if n.endswith(".parquet")]
    assert report.files_before == 12 and report.files_after == len(parquet) < 12
    assert (report.cells, report.rows, report.cells_merged, report.cell_files) == (12, 72, 12, 0)
    expected = Counter(dict.fromkeys(keys, 6))
    assert all(seen == expected for seen in plain_readers(folder).values())
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    assert sorted(manifest["files"]) == parquet
    assert sorted(k for f in manifest["files"].values() for k in f["keys"]) == sorted(keys)
    for name in parquet:  # the fixed schema, rows sorted, a cell never split across files
        table = pq.read_table(folder / name)
        assert table.schema.equals(RESULT_SCHEMA, check_metadata=False)
        df = table.to_pandas()
        pd.testing.assert_frame_equal(df, df.sort_values(SORT, ignore_index=True))
        assert sorted(set(df["cell_key"])) == manifest["files"][name]["keys"]
        assert manifest["files"][name]["rows"] == len(df)
    cell = store.read_cells("s", [keys[0]])
    assert cell.num_rows == 6 and set(cell["cell_key"].to_pylist()) == {keys[0]}


def test_compacting_again_writes_nothing(root, tmp_path):
    store = Store(root)
    fill(store)
    compact(store, "s", file_rows=FILE_ROWS)
    folder = folder_of(tmp_path)
    stamps = {n: (folder / n).stat().st_mtime_ns for n in names(folder)}

    report = compact(store, "s", file_rows=FILE_ROWS)

    assert (report.files_written, report.removed, report.cells_merged) == (0, 0, 0)
    assert {n: (folder / n).stat().st_mtime_ns for n in names(folder)} == stamps


def test_cells_written_after_compaction_are_seen_and_merged_next_time(root, tmp_path):
    store = Store(root)
    old = fill(store)
    compact(store, "s", file_rows=FILE_ROWS)
    new = fill(store, seeds=[7, 8])
    assert store.done_keys("s") == set(old) | set(new)
    assert rows_per_cell(frame(store)) == Counter(dict.fromkeys(old + new, 6))
    before = frame(store)

    report = compact(store, "s", file_rows=FILE_ROWS)

    assert report.cells_merged == len(new) and report.cell_files == 0
    pd.testing.assert_frame_equal(frame(store), before)
    assert_tidy(folder_of(tmp_path))
    want = Counter(dict.fromkeys(old + new, 6))
    assert all(seen == want for seen in plain_readers(folder_of(tmp_path)).values())


def test_rewriting_a_compacted_cell_leaves_only_the_new_rows(root, tmp_path):
    store = Store(root)
    keys = fill(store)
    compact(store, "s", file_rows=FILE_ROWS)
    others = frame(store).query("cell_key != @keys[0]").reset_index(drop=True)
    cell = make_cell(seed=0, data_size=50)
    assert cell.cell_key == keys[0]

    store.write_cell("s", cell.cell_key, rows_for(cell, n_steps=1))  # a re-run: 2 rows instead of 6

    expected = Counter(dict.fromkeys(keys, 6)) | {keys[0]: 2}
    assert rows_per_cell(frame(store)) == expected
    assert all(seen == expected for seen in plain_readers(folder_of(tmp_path)).values())
    pd.testing.assert_frame_equal(frame(store).query("cell_key != @keys[0]").reset_index(drop=True), others)
    assert store.read_cells("s", [keys[0]]).num_rows == 2 and store.done_keys("s") == set(keys)
    compact(store, "s", file_rows=FILE_ROWS)
    assert rows_per_cell(frame(store)) == expected
    assert_tidy(folder_of(tmp_path))


def test_read_results_can_take_final_rows_and_some_columns(root, tmp_path):
    store = Store(root)
    fill(store)
    compact(store, "s", file_rows=FILE_ROWS)
    df = read_results(store, "s", columns=["cell_key", "accuracy"], final_only=True)
    assert list(df.columns) == ["cell_key", "accuracy"] and len(df) == 12 * 2
    with pytest.raises(ValueError, match="not in the store schema"):
        read_results(store, "s", columns=["nope"])


def test_a_key_cannot_take_a_compacted_file_name(tmp_path):
    cell = make_cell()
    with pytest.raises(ValueError, match="compacted files"):
        Store(tmp_path).write_cell("s", "compact-abc-0000", rows_for(cell))


# ----- interrupted compactions and re-writes ----------------------------------------------------------

class Crash(Exception):
    pass


def crash_at(store: Store, n: int) -> None:
    """The store's n-th write or delete (from 0) fails as a crash would: earlier ones completed, a write
    leaves a partial temp file, and the exception stops everything after it."""
    count = itertools.count()
    write, delete = store.layout.files.write_atomic, store.layout.files.delete

    def crashing_write(path, data):
        if next(count) == n:
            folder, name = path.rsplit("/", 1)
            Path(folder, f".{name}.crash.tmp").write_bytes(bytes(data)[:16])
            raise Crash
        write(path, data)

    def crashing_delete(path):
        if next(count) == n:
            raise Crash
        delete(path)

    store.layout.files.write_atomic, store.layout.files.delete = crashing_write, crashing_delete


def assert_readers_see(root: Path, expected: pd.DataFrame) -> None:
    """A fresh Store (a reader that never saw the crash) sees exactly these rows and done keys."""
    reader = Store(root)
    pd.testing.assert_frame_equal(frame(reader), expected)
    assert reader.done_keys("s") == set(expected["cell_key"])
    n = connect(reader, "s").execute("SELECT count(*) FROM results").fetchone()[0]
    assert n == len(expected)


def first_compaction(root: Path) -> None:
    fill(Store(root))


def merging_compaction(root: Path) -> None:
    """Compacted files already there (the last one under-filled), plus new cell files to merge with it."""
    store = Store(root)
    fill(store)
    compact(store, "s", file_rows=FILE_ROWS)
    fill(store, seeds=[7, 8])


@pytest.mark.parametrize("setup", [first_compaction, merging_compaction])
def test_a_compaction_interrupted_anywhere_counts_each_cell_once_and_the_next_one_finishes(tmp_path, setup):
    crashes = 0
    for n in itertools.count():
        root = tmp_path / f"crash{n}"
        setup(root)
        expected = frame(Store(root))
        store = Store(root)
        crash_at(store, n)
        try:
            compact(store, "s", file_rows=FILE_ROWS)
        except Crash:
            crashes += 1
        else:
            break  # n is past the last write or delete: every step has been interrupted once
        assert_readers_see(root, expected)
        report = compact(Store(root), "s", file_rows=FILE_ROWS)
        assert report.cell_files == 0
        assert_readers_see(root, expected)
        folder = folder_of(root)
        assert_tidy(folder)
        want = rows_per_cell(expected)
        assert all(seen == want for seen in plain_readers(folder).values()), n
        assert compact(Store(root), "s", file_rows=FILE_ROWS).files_written == 0
    assert crashes >= 8  # several files written, the manifest, the deletions


def rewrites(keys: list[str], n: int) -> dict:  # key -> pyarrow table
    """New rows (one step: 2 rows instead of 6) for the cells of the first `n` of `keys` (fill's order)."""
    from augworth.results import rows_to_table

    cells = [make_cell(seed=seed, data_size=size) for seed, size in itertools.product(range(4), (50, 100, 200))]
    assert [c.cell_key for c in cells] == keys
    return {c.cell_key: rows_to_table(rows_for(c, n_steps=1), sweep="s", key=c.cell_key) for c in cells[:n]}


@pytest.mark.parametrize("n_cells", [1, 5])  # one cell in one compacted file; five across several
def test_a_rewrite_of_compacted_cells_interrupted_anywhere_keeps_one_copy(tmp_path, n_cells):
    crashes = 0
    for n in itertools.count():
        root = tmp_path / f"crash{n}"
        store = Store(root)
        keys = fill(store)
        compact(store, "s", file_rows=FILE_ROWS)
        old = frame(store)
        new = rewrites(keys, n_cells)
        crash_at(store, n)
        try:
            store.write_cells("s", new)
        except Crash:
            crashes += 1
        else:
            break
        seen = frame(Store(root))
        counts = rows_per_cell(seen)
        assert set(counts) == set(keys) and all(counts[k] == 6 for k in keys if k not in new)
        # each cell has its old copy or its new one, once; and the switch is one manifest write for all
        assert {counts[k] for k in new} in ({6}, {2})
        if counts[keys[0]] == 6:
            pd.testing.assert_frame_equal(seen, old)
        compact(Store(root), "s", file_rows=FILE_ROWS)
        assert_readers_see(root, seen)  # tidying up changes nothing readers see
        assert_tidy(folder_of(root))
    # the cell files, the rest of each compacted file, the manifest, each old file deleted
    assert crashes >= n_cells + 3
    assert rows_per_cell(frame(store)) == Counter(dict.fromkeys(keys, 6)) | dict.fromkeys(new, 2)
    assert all(seen == rows_per_cell(frame(store)) for seen in plain_readers(folder_of(root)).values())


def test_writing_cells_rewrites_each_compacted_file_holding_them_once(root, tmp_path):
    store = Store(root)
    keys = fill(store)
    compact(store, "s", file_rows=FILE_ROWS)
    before = store.layout.read_manifest("s")
    new = rewrites(keys, 5)
    holders = {name for name, f in before.items() if set(f.keys) & new.keys()}
    assert len(holders) >= 2  # the five cells sit in several compacted files
    writes = []
    write = store.layout.files.write_atomic
    store.layout.files.write_atomic = lambda path, data: (writes.append(path.rsplit("/", 1)[1]), write(path, data))[1]
    store.write_cells("s", new)
    after = store.layout.read_manifest("s")
    assert sorted(w for w in writes if w.startswith("compact-")) == sorted(set(after) - set(before))
    assert len(set(after) - set(before)) <= len(holders) and not holders & set(after)  # each holder rewritten once
    assert writes.count(MANIFEST_NAME) == 1 and sorted(w for w in writes if w[:-8] in new) == sorted(
        f"{k}.parquet" for k in new)
    assert rows_per_cell(frame(store)) == Counter(dict.fromkeys(keys, 6)) | dict.fromkeys(new, 2)
    with pytest.raises(ValueError, match="not .all. this cell's"):
        store.write_cells("s", {keys[6]: new[keys[0]]})


def test_each_step_of_a_compaction_keeps_store_readers_exact(root, tmp_path):
    """The same as a crash between steps, spelled out: new files first, then the manifest, then deletions."""
    store = Store(root)
    keys = fill(store)
    expected = frame(store)
    folder = folder_of(tmp_path)
    state = store.layout.results_state("s")

    written, merged = compact_steps._compact_write(store, "s", state, file_rows=FILE_ROWS, row_group_rows=8)
    assert written and merged == [] and not (folder / MANIFEST_NAME).exists()
    assert len(store.layout.results_state("s").orphans) == len(written)  # compacted, no manifest yet: skipped
    assert_readers_see(tmp_path, expected)

    compact_steps._compact_commit(store, "s", state, written, merged)
    now = store.layout.results_state("s")
    assert len(now.leftovers) == len(keys) and now.cells == {}  # cell files still there, now skipped
    assert_readers_see(tmp_path, expected)

    compact_steps._compact_cleanup(store, "s")
    assert_readers_see(tmp_path, expected)
    assert_tidy(folder)


def test_a_reader_whose_listing_a_compaction_overtook_lists_again(tmp_path):
    """Listing, then a whole compaction (merging earlier compacted files), then the manifest read."""
    merging_compaction(tmp_path)
    keys = Store(tmp_path).done_keys("s")
    reader = Store(tmp_path)
    real = reader.layout.files.infos
    calls = itertools.count()

    def stale_then_real(folder):
        infos = real(folder)
        if next(calls) == 0:
            # commits and deletes after our listing; at 60 rows a file, the earlier files (24 rows) merge too
            report = compact(Store(tmp_path), "s", file_rows=3 * FILE_ROWS)
            assert report.removed > report.cells_merged
        return infos

    reader.layout.files.infos = stale_then_real
    state = reader.layout.results_state("s")
    assert set(state.cells) | set(state.holder_of()) == keys  # not missing the cells of the merged files
    assert all(os.path.exists(f) for f in state.files())
    assert next(calls) == 2  # it listed twice


def test_a_compacted_file_holding_cells_found_nowhere_else_is_never_deleted(root, tmp_path):
    store = Store(root)
    fill(store)
    compact(store, "s", file_rows=FILE_ROWS)
    folder = folder_of(tmp_path)
    (folder / MANIFEST_NAME).unlink()  # lost by hand: the compacted files now hold the only copies
    before = names(folder)
    with pytest.raises(StoreError, match="found in no other file"):
        compact(store, "s", file_rows=FILE_ROWS)
    assert names(folder) == before
    assert store.done_keys("s") == set()  # unlisted files are never read: no cell counted twice


def test_a_manifest_that_lists_a_cell_twice_is_refused(root, tmp_path):
    store = Store(root)
    fill(store)
    compact(store, "s", file_rows=FILE_ROWS)
    path = folder_of(tmp_path) / MANIFEST_NAME
    manifest = json.loads(path.read_text())
    first, second = sorted(manifest["files"])[:2]
    manifest["files"][second]["keys"].append(manifest["files"][first]["keys"][0])
    path.write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match="listed twice"):
        store.done_keys("s")
    path.write_text("{not json")
    with pytest.raises(StoreError, match="not a compaction manifest"):
        store.result_files("s")


# ----- the command and the benchmark -----------------------------------------------------------------

def cli(*args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    return subprocess.run([*CLI, *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120)


def test_the_compact_command_prints_counts_and_refuses_bad_sweeps(tmp_path):
    store = Store(tmp_path)
    store.write_spec("s", "name: s\n")
    fill(store)

    done = cli("compact", "s", "--store", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "12 cells, 72 rows; files 12 -> 1 (1 compacted, 0 per-cell)" in done.stdout
    again = cli("compact", "s", "--store", str(tmp_path), "--json")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert (report["cells"], report["rows"], report["files_after"], report["files_written"]) == (12, 72, 1, 0)

    for bad in ("missing", "../escape"):
        refused = cli("compact", bad, "--store", str(tmp_path))
        assert refused.returncode == 2 and refused.stdout == ""
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr


def test_the_benchmark_runs_at_a_tiny_size(capsys):
    from bench.store import main

    seconds = main(["--smoke"])
    printed = capsys.readouterr().out
    assert "ratio = baseline / seconds" in printed and "query, compacted" in printed
    assert {"pandas, per file + concat", "query, compacted", "load + fits, compacted"} <= set(seconds)
