"""Compaction: many cell files into a few large sorted ones plus a manifest, safe to interrupt anywhere.

See `compact` for the three steps and why a reader never counts a cell twice.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from .files import StoreError
from .layout import FILE_ROWS, MANIFEST_NAME, ROW_GROUP_ROWS, CompactedFile, ResultsState, compacted_name
from .schema import RESULT_SCHEMA, SORT_ORDER, parquet_bytes
from .store import Store

_READ_CHUNK = 64  # files read per pyarrow dataset scan while compacting


@dataclass(frozen=True)
class CompactionReport:
    """What `Store.compact` did. Files count `*.parquet` in results/ (what a plain reader's glob sees)."""

    sweep: str
    files_before: int
    files_after: int
    compacted_files: int  # after
    cell_files: int  # cell files left after (0 once a compaction completes)
    cells: int  # done cells after (unchanged by compaction)
    rows: int  # rows after (unchanged by compaction)
    cells_merged: int  # cell files merged by this run
    files_written: int  # compacted files written by this run
    removed: int  # files deleted: merged cell files, superseded compacted files, leftovers, temp files
    seconds: float


def compact(
    store: Store, sweep: str, *, file_rows: int = FILE_ROWS, row_group_rows: int = ROW_GROUP_ROWS
) -> CompactionReport:
    """Merge the sweep's cell files into a few large files, sorted by (cell_key, step, eval_set).

    Run it while no sweep runs: one writer per sweep. Three steps, each safe to interrupt anywhere:

    1. `_compact_write`: the cell files, and compacted files under half of `file_rows` rows, go into new
       files `compact-<gen>-<n>.parquet` (atomic each). The manifest does not list them yet, so readers
       through `Store` skip them; a plain reader of the folder sees those cells twice until step 2.
    2. `_compact_commit`: one atomic manifest write lists the new files and drops the merged ones.
       Readers switch over at once: the merged cell files are now leftovers, the merged compacted files
       orphans, and both are skipped.
    3. `_compact_cleanup`: deletes leftovers, orphans whose cells are all held elsewhere, and temp files.

    Nothing is deleted before the manifest lists a copy of it, and the next run finishes an interrupted
    one (its step 3 removes what the last one left). With no cell files, nothing is written.
    """
    if file_rows < 1 or row_group_rows < 1:
        raise ValueError("file_rows and row_group_rows must be positive")
    t0 = time.perf_counter()
    before = store.layout.results_state(sweep)
    _check_orphans(store, before)
    written, merged = _compact_write(store, sweep, before, file_rows=file_rows,
                                          row_group_rows=row_group_rows)
    if written or merged:
        _compact_commit(store, sweep, before, written, merged)
    removed = _compact_cleanup(store, sweep)
    after = store.layout.results_state(sweep)
    cell_rows = sum(pq.read_metadata(p, filesystem=store.layout.fs).num_rows for p in after.cells.values())
    return CompactionReport(
        sweep=sweep,
        files_before=_n_parquet(before),
        files_after=_n_parquet(after),
        compacted_files=len(after.compacted),
        cell_files=len(after.cells),
        cells=len(after.cells) + sum(len(f.keys) for f in after.compacted.values()),
        rows=cell_rows + sum(f.rows for f in after.compacted.values()),
        cells_merged=len(before.cells) if written else 0,
        files_written=len(written),
        removed=removed,
        seconds=time.perf_counter() - t0,
    )

def _compact_write(
    store: Store, sweep: str, state: ResultsState, *, file_rows: int, row_group_rows: int
) -> tuple[list[CompactedFile], list[str]]:
    """Step 1: write the new compacted files; returns them and the names of the compacted files merged."""
    if not state.cells:
        return [], []
    merged = sorted(name for name, f in state.compacted.items() if f.rows < file_rows // 2)
    sources = [f"{state.folder}/{name}" for name in merged]
    sources += [state.cells[key] for key in sorted(state.cells)]
    generation = uuid.uuid4().hex[:12]
    written: list[CompactedFile] = []

    def flush(table: pa.Table) -> None:
        name = compacted_name(generation, len(written))
        store.layout.files.write_atomic(f"{state.folder}/{name}", parquet_bytes(table, row_group_rows=row_group_rows,
                                                                    ordered=True))
        keys = pc.unique(table["cell_key"]).to_pylist()
        written.append(CompactedFile(name, table.num_rows, tuple(sorted(keys))))

    # Bounded memory: read a few dozen files at a time; cut a file once 1.5 files' rows are in hand, so
    # the last file holds at least half a file (a cell never splits: all its rows come in one chunk).
    pending: list[pa.Table] = []
    n_pending = 0
    for chunk in _batched(sources, _READ_CHUNK):
        table = ds.dataset(chunk, schema=RESULT_SCHEMA, format="parquet", filesystem=store.layout.fs).to_table()
        pending.append(table)
        n_pending += table.num_rows
        while n_pending >= file_rows + file_rows // 2:
            table = pa.concat_tables(pending).sort_by(list(SORT_ORDER))
            cut = _cell_boundary(table, file_rows)
            flush(table.slice(0, cut))
            pending, n_pending = [table.slice(cut)], table.num_rows - cut
    if n_pending:
        flush(pa.concat_tables(pending).sort_by(list(SORT_ORDER)))
    return written, merged

def _compact_commit(
    store: Store, sweep: str, state: ResultsState, written: list[CompactedFile], merged: list[str]
) -> None:
    """Step 2: the manifest lists the new files instead of the merged ones (and drops missing ones)."""
    files = {name: f for name, f in state.compacted.items() if name not in merged}
    files.update((f.name, f) for f in written)
    store.layout.write_manifest(sweep, files)

def _compact_cleanup(store: Store, sweep: str) -> int:
    """Step 3: delete what readers skip (leftover cell files, orphans, temp files); returns the count."""
    state = store.layout.results_state(sweep)
    _check_orphans(store, state)
    doomed = [*state.leftovers, *state.orphans, *state.temps]
    for path in doomed:
        store.layout.files.delete(path)
    return len(doomed)

def _check_orphans(store: Store, state: ResultsState) -> None:
    """An orphan may go only if each of its cells is in a listed compacted file or its own cell file.

    Every orphan our steps leave is such a copy; one holding cells found nowhere else means the manifest
    was lost or edited: stop before deleting anything.
    """
    have = set(state.cells) | set(state.holder_of())
    for path in state.orphans:
        keys = set(pq.read_table(path, columns=["cell_key"], filesystem=store.layout.fs)["cell_key"].to_pylist())
        lost = keys - have
        if lost:
            raise StoreError(
                f"{path} is not in the manifest but holds {len(lost)} cell(s) found in no other file "
                f"(e.g. {sorted(lost)[0]}): was {MANIFEST_NAME} lost or edited? Nothing was deleted"
            )

def _cell_boundary(table: pa.Table, rows: int) -> int:
    """In a table sorted by cell_key, the end of the cell that row `rows - 1` belongs to."""
    if rows >= table.num_rows:
        return int(table.num_rows)
    last = table["cell_key"][rows - 1]
    return int(pc.sum(pc.less_equal(table["cell_key"], last)).as_py())


def _batched(items: Sequence[str], n: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), n):
        yield items[start:start + n]


def _n_parquet(state: ResultsState) -> int:
    return len(state.compacted) + len(state.cells) + len(state.leftovers) + len(state.orphans)
