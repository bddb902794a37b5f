"""Where a sweep's files lie under a store's root, and how its results/ folder is read into what readers read
(`SweepFiles.results_state`) and the compaction manifest. Used by the store (`store.py`), compaction and
queries (`compaction.py`, `query.py`) and the sweep's lock and lease (`orchestrator/lock.py`): the layout is
theirs to know, and `Store`'s verbs are everyone else's.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from .files import Root, StoreError, check_sweep_name

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


class SweepFiles:
    """The folder layout of a store (see `store.py`'s docstring) over its root's file layer."""

    def __init__(self, files: Root) -> None:
        self.files = files  # every read, write and delete goes through it
        self.fs, self.local, self.root, self.uri = files.fs, files.local, files.path, files.uri
        self.shown = files.shown  # the URI with its secrets redacted: what messages say

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


def compacted_name(generation: str, index: int) -> str:
    return f"{COMPACT_PREFIX}{generation}-{index:04d}.parquet"
