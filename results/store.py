"""The results store: Parquet files of finished cells, the source of truth for what is done.

Layout under a root (a local path or any pyarrow filesystem URI)::

    <root>/<sweep>/spec.yaml                          the frozen spec
    <root>/<sweep>/results/<cell_key>.parquet         rows of one finished cell (flat: no hive folders)
    <root>/<sweep>/results/compact-<gen>-<n>.parquet  rows of many cells, written by `compact`
    <root>/<sweep>/results/_manifest.json             the cell keys in each compacted file (the commit point)
    <root>/<sweep>/failures/<cell_key>.json           a cell that failed after its retries
    <root>/<sweep>/weights/<cell_key>.pt              a cell's final weights (execution.keep_weights; torch's)

Contract of `Store` (its public methods are the whole interface, each with its part of the contract in its
docstring, as optuna's `BaseStorage` does; the folder layout and the listing of results/ are `layout.py`'s,
reached as `store.layout` by results/ itself and by the sweep's lock only):
- `write_cell(s)` is atomic and idempotent: rows go to a temp name that does not end in `.parquet`, then a
  rename; a reader never sees a partial file, and writing a done cell again replaces it (no duplicate) —
  also when the cell sits in a compacted file: that file is rewritten without it (see `write_cells`).
- A cell is done when its rows are in the store: its own file exists, or the manifest lists it in a
  compacted file that exists. A cell file counts by its content, not its name: the listing reads each
  one's footer (the cell_key column's statistics, never the rows), and a file whose rows are another cell's
  is left out of `done_keys` and of every reader, and listed as `misnamed` (`verify` reports it).
- `result_files` lists what readers read, each cell in exactly one file, whatever state a crash left:
  compacted files count only once the manifest lists them, and a cell file whose key the manifest lists
  (a copy that a crash left behind) is skipped. `query.connect` and `query.read_results` read exactly those files.
- Only one writer per sweep: the driver while a sweep runs, or `compact` while none runs (the sweep's lock,
  orchestrator/lock.py); readers may run at any time. A reader racing a compaction never counts a cell twice nor misses
  one; at worst a file it was about to open is deleted under it, and it fails (run it again).
- Nothing is ever unpickled from the store: Parquet, JSON and YAML, and kept weights as tensors only
  (`torch.load(weights_only=True)`, in trainables/weights.py; the store itself never opens them).

Plain readers (`pd.read_parquet(folder)`, DuckDB or polars over `folder/*.parquet`) see each cell once
too, except in the window of a write or compaction that crashed, until the next `compact` tidies up: the
manifest starts with `_`, which pyarrow's datasets skip, and its name does not end in `.parquet`.

Compaction (`compaction.compact`) and queries and verification (`query.connect`, `read_results`, `verify`,
`quarantine`) are functions over a `Store`, so the contract above stays the store's whole surface. Imports
neither Ray nor torch (DuckDB only inside queries), so `augworth query` and `analysis` stay light.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from .files import Root, StoreError, check_sweep_name
from .layout import COMPACT_PREFIX, ROW_GROUP_ROWS, CompactedFile, SweepFiles, compacted_name
from .schema import RESULT_SCHEMA, conform, parquet_bytes, rows_to_table


class Store:
    """A results store under `root` (a local path or a pyarrow filesystem URI such as s3://bucket/x).

    Verbs, by what they hold: the frozen spec (`sweeps`, `has_sweep`, `write_spec`, `read_spec`), the
    driver's notes for `status` (`write_grid`, `read_grid`, `write_running`, `read_running`), finished cells
    (`write_cells`, `write_cell`, `read_cells`, `done_keys`, `result_files`) and failed ones (`write_failure`,
    `clear_failure`, `failures`); and where things are, for messages and for other processes (`shown`,
    `local`, `spec_source`, `location`). Every method takes the sweep's name and checks it
    (`files.check_sweep_name`); a missing sweep reads as empty except in `read_spec`.
    """

    def __init__(self, root: str | Path) -> None:
        self.layout = SweepFiles(Root(root))

    # ----- where things are --------------------------------------------------------------------
    @property
    def shown(self) -> str:
        """The root as messages name it: a local path, or the URI with its secrets redacted."""
        return self.layout.shown

    @property
    def local(self) -> bool:
        """Whether the root is a local folder (not an object store or other URI)."""
        return self.layout.local

    def spec_source(self, sweep: str) -> str:
        """The frozen spec as messages name it (the store's URI with its secrets redacted)."""
        return f"{self.shown}/{check_sweep_name(sweep)}/spec.yaml"

    def location(self, sweep: str, name: str) -> str:
        """Where another process (a worker, a user's shell) opens one of the sweep's folders or files outside
        the contract's (`results`, `figures`, `checkpoints`, `weights`, the search's journal): a local path, or
        the store's URI with the name added."""
        return self.layout.files.location(check_sweep_name(sweep), name)

    # ----- sweeps and specs --------------------------------------------------------------------
    def sweeps(self) -> list[str]:
        """The sweeps' names (folders under the root), sorted."""
        files = self.layout.files
        return sorted(i.base_name for i in files.infos(files.path) if i.type == pafs.FileType.Directory)

    def has_sweep(self, sweep: str) -> bool:
        """Whether the sweep has a frozen spec: a sweep exists from its first `write_spec` on."""
        return self.layout.files.exists(f"{self.layout.sweep_dir(sweep)}/spec.yaml")

    def write_spec(self, sweep: str, text: str) -> None:
        """Freeze the sweep's spec (atomic: a reader sees the old text or the new, whole)."""
        self.layout.files.write_atomic(f"{self.layout.sweep_dir(sweep)}/spec.yaml", text.encode())

    def read_spec(self, sweep: str) -> str:
        """The frozen spec's text; `StoreError` naming the store if the sweep has none."""
        path = f"{self.layout.sweep_dir(sweep)}/spec.yaml"
        if not self.layout.files.exists(path):
            raise StoreError(f"no sweep {sweep!r} in store {self.shown} ({path} not found)")
        return self.layout.files.read_bytes(path).decode()

    # ----- the driver's notes ------------------------------------------------------------------
    def write_grid(self, sweep: str, cells: Sequence[dict[str, Any]]) -> None:
        """The sweep's expanded grid (`cell_key` + cell fields), so `status` needs neither torch nor the data."""
        table = pa.Table.from_pylist([dict(c) for c in cells])
        self.layout.files.write_atomic(f"{self.layout.sweep_dir(sweep)}/grid.parquet", parquet_bytes(table))

    def read_grid(self, sweep: str) -> pa.Table | None:
        """The grid `write_grid` wrote last; None before the first run."""
        path = f"{self.layout.sweep_dir(sweep)}/grid.parquet"
        if not self.layout.files.exists(path):
            return None
        with self.layout.fs.open_input_file(path) as f:  # not pq.read_table: its datasets layer loads pandas (0.5 s)
            return pq.ParquetFile(f).read()

    def write_running(self, sweep: str, running: dict[str, dict[str, Any]]) -> None:
        """Cells a live driver is training now (cell_key -> host, since); removed when the run ends."""
        path = f"{self.layout.sweep_dir(sweep)}/running.json"
        if running:
            self.layout.files.write_atomic(path, json.dumps(running, sort_keys=True).encode())
        else:
            self.layout.files.delete(path)

    def read_running(self, sweep: str) -> dict[str, dict[str, Any]]:
        """What `write_running` wrote last: empty when no driver runs (or one was killed before it could say)."""
        path = f"{self.layout.sweep_dir(sweep)}/running.json"
        if not self.layout.files.exists(path):
            return {}
        running: dict[str, dict[str, Any]] = json.loads(self.layout.files.read_bytes(path))
        return running

    # ----- cells -------------------------------------------------------------------------------
    def done_keys(self, sweep: str) -> set[str]:
        """The cells whose rows are in the store (by content: a misnamed file's name does not count)."""
        state = self.layout.results_state(sweep)
        return set(state.cells) | set(state.holder_of())

    def result_files(self, sweep: str) -> list[str]:
        """The files readers read, each done cell in exactly one: listed compacted files, then the cells no
        compacted file holds."""
        return self.layout.results_state(sweep).files()

    def write_cell(self, sweep: str, key: str, rows: Sequence[dict[str, Any]]) -> str:
        """Write one finished cell's rows atomically; returns the path of the cell's own file (`write_cells`)."""
        if not rows:
            raise ValueError(f"cell {key}: no rows to write")
        self.write_cells(sweep, {key: rows_to_table(rows, sweep=sweep, key=key)})
        return self.layout.cell_path(sweep, key)

    def write_cells(self, sweep: str, tables: Mapping[str, pa.Table]) -> None:
        """Write cells' rows (key -> all of that cell's rows, in RESULT_SCHEMA), each atomically to its own file.

        Writing a cell that a compacted file holds (a re-run of a done cell, or rows added by `augworth
        evaluate`) leaves the new rows as the only copy: the cells' files are written, then each compacted
        file holding any of them is rewritten without them under a new name, and one manifest write switches
        readers from the old files to the new ones; then the old files are deleted. Interrupted before the
        manifest write, readers keep the old copies (the write did not happen; the next `compact` deletes the
        unused files); after it, they have the new ones. (The cells' files come first so that a reader whose
        listing has a new compacted file has them.)
        """
        for key, table in tables.items():
            if key.startswith(COMPACT_PREFIX):
                raise ValueError(f"cell {key}: names starting with {COMPACT_PREFIX!r} are for compacted files")
            if not table.num_rows or set(table["cell_key"].to_pylist()) != {key}:
                raise ValueError(f"cell {key}: the rows to write are not (all) this cell's")
        manifest = self.layout.read_manifest(sweep)
        holders: dict[str, set[str]] = {}  # compacted file -> the cells to take out of it
        for f in manifest.values():
            if set(f.keys) & tables.keys() and self.layout.files.exists(f"{self.layout.results_dir(sweep)}/{f.name}"):
                holders[f.name] = set(f.keys) & tables.keys()
        for key, table in tables.items():  # skipped by readers while a listed compacted file holds the key
            self.layout.files.write_atomic(self.layout.cell_path(sweep, key), parquet_bytes(table.cast(RESULT_SCHEMA)))
        if holders:
            self._take_out_of_compacted(sweep, manifest, holders)

    def _take_out_of_compacted(self, sweep: str, manifest: dict[str, CompactedFile],
                               holders: dict[str, set[str]]) -> None:
        folder = self.layout.results_dir(sweep)
        files = {name: f for name, f in manifest.items() if name not in holders}
        for name, moved in holders.items():
            rest = pq.read_table(f"{folder}/{name}", filesystem=self.layout.fs)
            rest = rest.filter(pc.invert(pc.is_in(rest["cell_key"], pa.array(sorted(moved)))))
            if rest.num_rows:
                new = compacted_name(uuid.uuid4().hex[:12], 0)
                data_rest = parquet_bytes(rest, row_group_rows=ROW_GROUP_ROWS, ordered=True)
                self.layout.files.write_atomic(f"{folder}/{new}", data_rest)
                files[new] = CompactedFile(new, rest.num_rows, tuple(k for k in manifest[name].keys if k not in moved))
        self.layout.write_manifest(sweep, files)  # the switch
        for name in holders:
            self.layout.files.delete(f"{folder}/{name}")

    def read_cells(self, sweep: str, keys: Sequence[str]) -> pa.Table:
        """The rows of the done cells among `keys`, in RESULT_SCHEMA; keys not done have none. One listing, each
        file read once, and only these keys' cell files have their footers checked: a search reads its trial's
        few cells from a sweep of thousands once per trial."""
        state = self.layout.results_state(sweep, only=set(keys))
        holder = state.holder_of()
        by_file: dict[str, list[str]] = {}
        for key in keys:
            path = state.cells.get(key) or (f"{state.folder}/{holder[key]}" if key in holder else None)
            if path is not None:
                by_file.setdefault(path, []).append(key)
        tables = [conform(pq.read_table(path, filesystem=self.layout.fs, filters=[("cell_key", "in", wanted)]))
                  for path, wanted in sorted(by_file.items())]
        return pa.concat_tables(tables) if tables else RESULT_SCHEMA.empty_table()

    # ----- failures ----------------------------------------------------------------------------
    def write_failure(self, sweep: str, key: str, record: dict[str, Any]) -> None:
        """Record that a cell failed after its retries (atomic; a JSON object, values as `str` where not JSON)."""
        data = json.dumps(record, indent=2, sort_keys=True, default=str).encode()
        self.layout.files.write_atomic(f"{self.layout.failures_dir(sweep)}/{key}.json", data)

    def clear_failure(self, sweep: str, key: str) -> None:
        """Forget a cell's failure (a retried cell that finished); clearing twice is fine."""
        self.layout.files.delete(f"{self.layout.failures_dir(sweep)}/{key}.json")

    def failures(self, sweep: str) -> dict[str, dict[str, Any]]:
        """cell_key -> failure record, for every cell whose failure is recorded."""
        out = {}
        for path in self.layout.files.list(self.layout.failures_dir(sweep), ".json"):
            out[path.rsplit("/", 1)[1][: -len(".json")]] = json.loads(self.layout.files.read_bytes(path))
        return out
