"""The results store: Parquet files of finished cells, the source of truth for what is done.

Layout under a root (a local path or any pyarrow filesystem URI)::

    <root>/<sweep>/spec.yaml                          the frozen spec
    <root>/<sweep>/results/<cell_key>.parquet         rows of one finished cell (flat: no hive folders)
    <root>/<sweep>/results/compact-<gen>-<n>.parquet  rows of many cells, written by `compact`
    <root>/<sweep>/results/_manifest.json             the cell keys in each compacted file (the commit point)
    <root>/<sweep>/failures/<cell_key>.json           a cell that failed after its retries
    <root>/<sweep>/weights/<cell_key>.pt              a cell's final weights (execution.keep_weights; torch's)

Contract of `Store`:
- `write_cell(s)` is atomic and idempotent: rows go to a temp name that does not end in `.parquet`, then a
  rename; a reader never sees a partial file, and writing a done cell again replaces it (no duplicate) —
  also when the cell sits in a compacted file: that file is rewritten without it (see `write_cells`).
- A cell is done when its rows are in the store: its own file exists, or the manifest lists it in a
  compacted file that exists. A cell file counts by its content, not its name: `results_state` reads each
  one's footer (the cell_key column's statistics, never the rows), and a file whose rows are another cell's
  is left out of `done_keys` and of every reader, and listed as `misnamed` (`verify` reports it).
- `result_files` lists what readers read, each cell in exactly one file, whatever state a crash left:
  compacted files count only once the manifest lists them, and a cell file whose key the manifest lists
  (a copy that a crash left behind) is skipped. `query.connect` and `query.read_results` read exactly those files.
- Only one writer per sweep: the driver while a sweep runs, or `compact` while none runs (a lock arrives
  later); readers may run at any time. A reader racing a compaction never counts a cell twice nor misses
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
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from .files import Root, StoreError, check_sweep_name
from .schema import RESULT_SCHEMA, conform, parquet_bytes, rows_to_table

# Compaction. A cell key is 16 hex characters, so no key is ever taken for a compacted file's name.
COMPACT_PREFIX = "compact-"
MANIFEST_NAME = "_manifest.json"  # '_': pyarrow datasets (and so pd.read_parquet(folder)) skip it
MANIFEST_FORMAT = "augworth-compact-manifest"
MANIFEST_VERSION = 1
FILE_ROWS = 250_000  # rows per compacted file (a file never splits a cell, so a little more or less)
ROW_GROUP_ROWS = 64 * 1024  # rows per row group: a unit of min/max pruning and of DuckDB's parallelism


@dataclass(frozen=True)
class CompactedFile:
    """One compacted file as the manifest lists it: its name in results/, its rows, its cells (sorted)."""

    name: str
    rows: int
    keys: tuple[str, ...]


@dataclass(frozen=True)
class ResultsState:
    """A sweep's results/ folder as one listing and the manifest show it, sorted into what readers read
    (`compacted`, `cells`) and what an interrupted write or compaction left behind (the rest)."""

    folder: str
    manifest: dict[str, CompactedFile]  # every file the manifest lists, present or not
    compacted: dict[str, CompactedFile]  # listed and present
    cells: dict[str, str]  # key -> path of each cell file whose key no compacted file holds
    leftovers: list[str] = field(default_factory=list)  # cell files whose key a compacted file holds
    orphans: list[str] = field(default_factory=list)  # compacted-file names the manifest does not list
    temps: list[str] = field(default_factory=list)  # temp files of writes that never got renamed
    misnamed: dict[str, str] = field(default_factory=dict)  # path -> why: a cell file whose rows are another cell's

    def holder_of(self) -> dict[str, str]:
        """key -> name of the compacted file that holds it."""
        return {key: f.name for f in self.compacted.values() for key in f.keys}

    def files(self) -> list[str]:
        """What readers read: each done cell in exactly one file."""
        return [f"{self.folder}/{name}" for name in sorted(self.compacted)] + [
            self.cells[key] for key in sorted(self.cells)
        ]


class Store:
    """A results store under `root` (a local path or a pyarrow filesystem URI such as s3://bucket/x)."""

    def __init__(self, root: str | Path) -> None:
        self.files = Root(root)  # every read, write and delete goes through it
        self.fs, self.local, self.root, self.uri = self.files.fs, self.files.local, self.files.path, self.files.uri
        self.shown = self.files.shown  # the URI with its secrets redacted: what messages say

    # ----- paths -------------------------------------------------------------------------------
    def sweep_dir(self, sweep: str) -> str:
        path = f"{self.root}/{check_sweep_name(sweep)}"
        if not self.files.inside(path):
            raise StoreError(f"sweep folder {path} is a symbolic link: a sweep may not lead out of its store root")
        return path

    def results_dir(self, sweep: str) -> str:
        return f"{self.sweep_dir(sweep)}/results"

    def failures_dir(self, sweep: str) -> str:
        return f"{self.sweep_dir(sweep)}/failures"

    def cell_path(self, sweep: str, key: str) -> str:
        return f"{self.results_dir(sweep)}/{key}.parquet"

    def spec_source(self, sweep: str) -> str:
        """The frozen spec as messages name it (the store's URI with its secrets redacted)."""
        return f"{self.shown}/{check_sweep_name(sweep)}/spec.yaml"

    def location(self, sweep: str, folder: str) -> str:
        """Where another process (a worker) opens one of the sweep's folders outside the contract's
        (`checkpoints`, `weights`): a local path, or the store's URI with the folder added."""
        return self.files.location(check_sweep_name(sweep), folder)

    # ----- sweeps and specs --------------------------------------------------------------------
    def sweeps(self) -> list[str]:
        return sorted(i.base_name for i in self.files.infos(self.root) if i.type == pafs.FileType.Directory)

    def has_sweep(self, sweep: str) -> bool:
        return self.files.exists(f"{self.sweep_dir(sweep)}/spec.yaml")

    def write_spec(self, sweep: str, text: str) -> None:
        self.files.write_atomic(f"{self.sweep_dir(sweep)}/spec.yaml", text.encode())

    def read_spec(self, sweep: str) -> str:
        path = f"{self.sweep_dir(sweep)}/spec.yaml"
        if not self.files.exists(path):
            raise StoreError(f"no sweep {sweep!r} in store {self.shown} ({path} not found)")
        return self.files.read_bytes(path).decode()

    def write_grid(self, sweep: str, cells: Sequence[dict[str, Any]]) -> None:
        """The sweep's expanded grid (`cell_key` + cell fields), so `status` needs neither torch nor the data."""
        table = pa.Table.from_pylist([dict(c) for c in cells])
        self.files.write_atomic(f"{self.sweep_dir(sweep)}/grid.parquet", parquet_bytes(table))

    def read_grid(self, sweep: str) -> pa.Table | None:
        path = f"{self.sweep_dir(sweep)}/grid.parquet"
        if not self.files.exists(path):
            return None
        with self.fs.open_input_file(path) as f:  # not pq.read_table: its datasets layer loads pandas (0.5 s)
            return pq.ParquetFile(f).read()

    def write_running(self, sweep: str, running: dict[str, dict[str, Any]]) -> None:
        """Cells a live driver is training now (cell_key -> host, since); removed when the run ends."""
        path = f"{self.sweep_dir(sweep)}/running.json"
        if running:
            self.files.write_atomic(path, json.dumps(running, sort_keys=True).encode())
        else:
            self.files.delete(path)

    def read_running(self, sweep: str) -> dict[str, dict[str, Any]]:
        path = f"{self.sweep_dir(sweep)}/running.json"
        if not self.files.exists(path):
            return {}
        running: dict[str, dict[str, Any]] = json.loads(self.files.read_bytes(path))
        return running

    # ----- cells -------------------------------------------------------------------------------
    def done_keys(self, sweep: str) -> set[str]:
        state = self.results_state(sweep)
        return set(state.cells) | set(state.holder_of())

    def result_files(self, sweep: str) -> list[str]:
        """The files readers read: listed compacted files, then the cells no compacted file holds."""
        return self.results_state(sweep).files()

    def write_cell(self, sweep: str, key: str, rows: Sequence[dict[str, Any]]) -> str:
        """Write one finished cell's rows atomically; returns the path of the cell's own file (`write_cells`)."""
        if not rows:
            raise ValueError(f"cell {key}: no rows to write")
        self.write_cells(sweep, {key: rows_to_table(rows, sweep=sweep, key=key)})
        return self.cell_path(sweep, key)

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
        manifest = self.read_manifest(sweep)
        holders: dict[str, set[str]] = {}  # compacted file -> the cells to take out of it
        for f in manifest.values():
            if set(f.keys) & tables.keys() and self.files.exists(f"{self.results_dir(sweep)}/{f.name}"):
                holders[f.name] = set(f.keys) & tables.keys()
        for key, table in tables.items():  # skipped by readers while a listed compacted file holds the key
            self.files.write_atomic(self.cell_path(sweep, key), parquet_bytes(table.cast(RESULT_SCHEMA)))
        if holders:
            self._take_out_of_compacted(sweep, manifest, holders)

    def _take_out_of_compacted(self, sweep: str, manifest: dict[str, CompactedFile],
                               holders: dict[str, set[str]]) -> None:
        folder = self.results_dir(sweep)
        files = {name: f for name, f in manifest.items() if name not in holders}
        for name, moved in holders.items():
            rest = pq.read_table(f"{folder}/{name}", filesystem=self.fs)
            rest = rest.filter(pc.invert(pc.is_in(rest["cell_key"], pa.array(sorted(moved)))))
            if rest.num_rows:
                new = compacted_name(uuid.uuid4().hex[:12], 0)
                data_rest = parquet_bytes(rest, row_group_rows=ROW_GROUP_ROWS, ordered=True)
                self.files.write_atomic(f"{folder}/{new}", data_rest)
                files[new] = CompactedFile(new, rest.num_rows, tuple(k for k in manifest[name].keys if k not in moved))
        self.write_manifest(sweep, files)  # the switch
        for name in holders:
            self.files.delete(f"{folder}/{name}")

    def read_cell(self, sweep: str, key: str) -> pa.Table:
        """The rows of one done cell, from its own file or from the compacted file that holds it."""
        table = self.read_cells(sweep, [key])
        if not table.num_rows:
            raise FileNotFoundError(f"cell {key} has no rows in sweep {sweep!r} ({self.results_dir(sweep)})")
        return table

    def read_cells(self, sweep: str, keys: Sequence[str], state: ResultsState | None = None) -> pa.Table:
        """The rows of the done cells among `keys` (one listing, each file read once), in RESULT_SCHEMA. Without a
        `state`, only these keys' cell files have their footers checked: a search reads its trial's few cells
        from a sweep of thousands once per trial."""
        state = state or self.results_state(sweep, only=set(keys))
        holder = state.holder_of()
        by_file: dict[str, list[str]] = {}
        for key in keys:
            path = state.cells.get(key) or (f"{state.folder}/{holder[key]}" if key in holder else None)
            if path is not None:
                by_file.setdefault(path, []).append(key)
        tables = [conform(pq.read_table(path, filesystem=self.fs, filters=[("cell_key", "in", wanted)]))
                  for path, wanted in sorted(by_file.items())]
        return pa.concat_tables(tables) if tables else RESULT_SCHEMA.empty_table()

    def results_state(self, sweep: str, only: Collection[str] | None = None) -> ResultsState:
        """One listing of results/ plus the manifest, sorted into what readers read and what is left over.
        `only`: the cells whose files are checked for another cell's rows (`misnamed`; default all of them).

        A compacted file counts once the manifest lists it, and then a cell file with a key it holds is a
        leftover (a copy an interrupted compaction or re-write had not deleted yet). A compacted file
        the manifest does not list is an orphan: written by a compaction or re-write that did not reach its
        manifest write, or replaced by one that did.

        The listing comes before the manifest, and is taken again if the manifest names a file it lacks
        (a compaction committed in between), so a reader racing a compaction never counts a cell twice
        nor silently misses one; at worst a file it was about to read is gone (an error, not a wrong sum).
        """
        folder = self.results_dir(sweep)
        for _ in range(3):
            infos = self.files.infos(folder)
            names = {i.base_name: i.path for i in infos if i.type == pafs.FileType.File}
            manifest = self.read_manifest(sweep)
            if names.keys() >= manifest.keys():
                break  # else a listing older than the manifest, or a compacted file deleted by hand
        compacted = {name: f for name, f in manifest.items() if name in names}
        held = {key for f in compacted.values() for key in f.keys}
        cells: dict[str, str] = {}
        leftovers, orphans, temps = [], [], []
        for name, path in sorted(names.items()):
            if name.startswith(".") and name.endswith(".tmp"):
                temps.append(path)
            elif not name.endswith(".parquet") or name in compacted:
                continue
            elif name.startswith(COMPACT_PREFIX):
                orphans.append(path)
            elif name[: -len(".parquet")] in held:
                leftovers.append(path)
            else:
                cells[name[: -len(".parquet")]] = path
        misnamed = self._misnamed(cells if only is None else {k: p for k, p in cells.items() if k in only})
        for path in misnamed:
            del cells[path.rsplit("/", 1)[1][: -len(".parquet")]]
        return ResultsState(folder, manifest, compacted, cells, leftovers, orphans, temps, misnamed)

    def _misnamed(self, cells: dict[str, str]) -> dict[str, str]:
        """The cell files whose rows are not (only) their name's cell, with why: a file copied or renamed by
        hand would count a cell twice and hide another. Read from each file's footer (the cell_key column's
        min and max): no rows are read. A footer that cannot be read is left to `verify`."""
        if not cells:
            return {}
        found = {key: self._file_keys(path) for key, path in cells.items()}  # threads measured slower here
        return {cells[key]: f"holds the rows of cell(s) {', '.join(sorted(keys)[:3])}, not of {key} as its name says"
                for key, keys in found.items() if keys is not None and keys != {key}}

    def _file_keys(self, path: str) -> set[str] | None:
        """The cell keys a result file holds, from its footer's statistics (None: no readable footer)."""
        try:
            meta = pq.read_metadata(path, filesystem=self.fs)
            column = meta.schema.names.index("cell_key")
            keys: set[str] = set()
            for i in range(meta.num_row_groups):
                stats = meta.row_group(i).column(column).statistics
                if stats is None or not stats.has_min_max:  # a writer without statistics: read the column
                    table = pq.read_table(path, columns=["cell_key"], filesystem=self.fs)
                    return set(table.column(0).unique().to_pylist())
                keys |= {stats.min, stats.max}
            return keys
        except (OSError, ValueError, pa.ArrowException):
            return None

    def read_manifest(self, sweep: str) -> dict[str, CompactedFile]:
        path = f"{self.results_dir(sweep)}/{MANIFEST_NAME}"
        try:
            raw = self.files.read_bytes(path)
        except FileNotFoundError:
            return {}
        try:
            data = json.loads(raw)
            if data.get("format") != MANIFEST_FORMAT:
                raise ValueError(f"format is {data.get('format')!r}, not {MANIFEST_FORMAT!r}")
            if int(data["version"]) > MANIFEST_VERSION:
                raise ValueError(f"version {data['version']}, newer than this reads ({MANIFEST_VERSION})")
            files = {
                name: CompactedFile(name, int(entry["rows"]), tuple(str(k) for k in entry["keys"]))
                for name, entry in data["files"].items()
            }
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StoreError(f"{path}: not a compaction manifest this augworth reads ({exc})") from None
        seen: set[str] = set()
        for f in files.values():  # a cell in two listed files would be read twice: refuse, never guess
            twice = seen.intersection(f.keys)
            if twice or not f.name.startswith(COMPACT_PREFIX) or "/" in f.name:
                raise StoreError(f"{path}: bad entry {f.name!r} (cells listed twice: {sorted(twice)[:3]})")
            seen.update(f.keys)
        return files

    def write_manifest(self, sweep: str, files: dict[str, CompactedFile]) -> None:
        data = {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "sweep": sweep,
            "files": {name: {"rows": f.rows, "keys": list(f.keys)} for name, f in sorted(files.items())},
        }
        self.files.write_atomic(f"{self.results_dir(sweep)}/{MANIFEST_NAME}",
                                json.dumps(data, indent=1).encode())

    # ----- failures ----------------------------------------------------------------------------
    def write_failure(self, sweep: str, key: str, record: dict[str, Any]) -> None:
        data = json.dumps(record, indent=2, sort_keys=True, default=str).encode()
        self.files.write_atomic(f"{self.failures_dir(sweep)}/{key}.json", data)

    def clear_failure(self, sweep: str, key: str) -> None:
        path = f"{self.failures_dir(sweep)}/{key}.json"
        self.files.delete(path)

    def failures(self, sweep: str) -> dict[str, dict[str, Any]]:
        out = {}
        for path in self.files.list(self.failures_dir(sweep), ".json"):
            out[path.rsplit("/", 1)[1][: -len(".json")]] = json.loads(self.files.read_bytes(path))
        return out


def compacted_name(generation: str, index: int) -> str:
    return f"{COMPACT_PREFIX}{generation}-{index:04d}.parquet"
