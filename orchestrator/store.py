"""The results store: one Parquet file per finished cell, the source of truth for what is done.

Layout under a root (a local path or any pyarrow filesystem URI)::

    <root>/<sweep>/spec.yaml                   the frozen spec
    <root>/<sweep>/results/<cell_key>.parquet  rows of one finished cell (flat: no hive folders)
    <root>/<sweep>/failures/<cell_key>.json    a cell that failed after its retries

Contract of `Store`:
- `write_cell` is atomic and idempotent: rows go to a temp name that does not end in `.parquet`, then a
  rename; a reader never sees a partial file, and writing a done cell again replaces it (no duplicate).
- A cell is done when its file exists; `done_keys` lists them from file names alone.
- Only the driver writes (one writer per sweep); readers may run at any time.
- Nothing is ever unpickled from the store: Parquet, JSON and YAML only.

This module imports neither Ray nor torch, so `augworth query` and `analysis` stay light.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

SCHEMA_VERSION = 1
SWEEP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

# Treatment = what is compared against the reference; group = everything else a fit must hold fixed.
TREATMENT_COLUMNS: tuple[str, ...] = ("augmentation", "strength", "views", "views_r", "invariance")
GROUP_COLUMNS: tuple[str, ...] = (
    "dataset", "dataset_fingerprint", "model", "width",
    "steps", "batch_size", "eval_every",
    "lr", "momentum", "nesterov", "weight_decay", "warmup_steps",
)

RESULT_SCHEMA = pa.schema(
    [
        pa.field("schema_version", pa.int32(), nullable=False),
        pa.field("sweep", pa.string(), nullable=False),
        pa.field("cell_key", pa.string(), nullable=False),
        # resolved cell fields (search_spaces.Cell), one typed column each
        pa.field("dataset", pa.string()),
        pa.field("dataset_fingerprint", pa.string()),
        pa.field("data_size", pa.int64()),
        pa.field("seed", pa.int64()),
        pa.field("augmentation", pa.string()),
        pa.field("strength", pa.float64()),
        pa.field("model", pa.string()),
        pa.field("width", pa.int64()),
        pa.field("steps", pa.int64()),
        pa.field("batch_size", pa.int64()),
        pa.field("eval_every", pa.int64()),
        pa.field("lr", pa.float64()),
        pa.field("momentum", pa.float64()),
        pa.field("nesterov", pa.bool_()),
        pa.field("weight_decay", pa.float64()),
        pa.field("warmup_steps", pa.int64()),
        pa.field("views", pa.string()),
        pa.field("views_r", pa.int64()),
        pa.field("invariance", pa.string()),
        # reserved for the probes (nullable from version 1 so later writers only fill them)
        pa.field("param_count", pa.int64()),
        pa.field("grad_noise", pa.float64()),
        pa.field("flatness", pa.float64()),
        pa.field("hessian_top_eig", pa.float64()),
        # one evaluation
        pa.field("step", pa.int64(), nullable=False),
        pa.field("final", pa.bool_(), nullable=False),
        pa.field("eval_set", pa.string(), nullable=False),
        pa.field("accuracy", pa.float64()),
        pa.field("loss", pa.float64()),
        pa.field("n_eval", pa.int64()),
        pa.field("train_seconds", pa.float64()),
        # provenance: what reproduces the row
        pa.field("host", pa.string()),
        pa.field("device", pa.string()),
        pa.field("torch_version", pa.string()),
        pa.field("augworth_version", pa.string()),
        pa.field("code_revision", pa.string()),
        pa.field("created_at", pa.timestamp("us", tz="UTC")),
        pa.field("config_json", pa.string()),
    ]
)
RESULT_COLUMNS: tuple[str, ...] = tuple(RESULT_SCHEMA.names)


class StoreError(ValueError):
    """Bad store input (a sweep name or root); the CLI turns it into exit code 2."""


def check_sweep_name(name: str) -> str:
    # The pattern rules out '/', '..' and absolute names, so a sweep can never escape its root.
    if not SWEEP_NAME.match(name) or name in {".", ".."}:
        raise StoreError(f"bad sweep name {name!r}: must match {SWEEP_NAME.pattern}")
    return name


class Store:
    """A results store under `root` (a local path or a pyarrow filesystem URI such as s3://bucket/x)."""

    def __init__(self, root: str | Path) -> None:
        root = str(root)
        if "://" in root:
            self.fs, base = pafs.FileSystem.from_uri(root)
            self.local = False
        else:
            self.fs, base = pafs.LocalFileSystem(), str(Path(root).expanduser().resolve())
            self.local = True
        self.root = base.rstrip("/")
        self.uri = root

    # ----- paths -------------------------------------------------------------------------------
    def sweep_dir(self, sweep: str) -> str:
        return f"{self.root}/{check_sweep_name(sweep)}"

    def results_dir(self, sweep: str) -> str:
        return f"{self.sweep_dir(sweep)}/results"

    def failures_dir(self, sweep: str) -> str:
        return f"{self.sweep_dir(sweep)}/failures"

    def cell_path(self, sweep: str, key: str) -> str:
        return f"{self.results_dir(sweep)}/{key}.parquet"

    def _exists(self, path: str) -> bool:
        return self.fs.get_file_info(path).type != pafs.FileType.NotFound

    def _list(self, folder: str, suffix: str) -> list[str]:
        if not self._exists(folder):
            return []
        infos = self.fs.get_file_info(pafs.FileSelector(folder, recursive=False))
        return sorted(
            i.path for i in infos if i.type == pafs.FileType.File and i.base_name.endswith(suffix)
        )

    def _write_atomic(self, path: str, data: bytes) -> None:
        folder, name = path.rsplit("/", 1)
        self.fs.create_dir(folder, recursive=True)
        if not self.local:  # object stores: a single put of the final object is atomic
            with self.fs.open_output_stream(path) as out:
                out.write(data)
            return
        tmp = f"{folder}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
        with self.fs.open_output_stream(tmp) as out:
            out.write(data)
        self.fs.move(tmp, path)  # rename(2): atomic on one file system

    # ----- sweeps and specs --------------------------------------------------------------------
    def sweeps(self) -> list[str]:
        if not self._exists(self.root):
            return []
        infos = self.fs.get_file_info(pafs.FileSelector(self.root, recursive=False))
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)

    def has_sweep(self, sweep: str) -> bool:
        return self._exists(f"{self.sweep_dir(sweep)}/spec.yaml")

    def write_spec(self, sweep: str, text: str) -> None:
        self._write_atomic(f"{self.sweep_dir(sweep)}/spec.yaml", text.encode())

    def read_spec(self, sweep: str) -> str:
        path = f"{self.sweep_dir(sweep)}/spec.yaml"
        if not self._exists(path):
            raise StoreError(f"no sweep {sweep!r} in store {self.uri} ({path} not found)")
        with self.fs.open_input_stream(path) as f:
            return f.read().decode()

    # ----- cells -------------------------------------------------------------------------------
    def done_keys(self, sweep: str) -> set[str]:
        return {p.rsplit("/", 1)[1][: -len(".parquet")] for p in self.result_files(sweep)}

    def result_files(self, sweep: str) -> list[str]:
        return self._list(self.results_dir(sweep), ".parquet")

    def write_cell(self, sweep: str, key: str, rows: Sequence[dict[str, Any]]) -> str:
        """Write one finished cell's rows atomically; returns the file's path."""
        if not rows:
            raise ValueError(f"cell {key}: no rows to write")
        table = rows_to_table(rows, sweep=sweep, key=key)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        path = self.cell_path(sweep, key)
        self._write_atomic(path, sink.getvalue().to_pybytes())
        return path

    def read_cell(self, sweep: str, key: str) -> pa.Table:
        return pq.read_table(self.cell_path(sweep, key), filesystem=self.fs)

    # ----- failures ----------------------------------------------------------------------------
    def write_failure(self, sweep: str, key: str, record: dict[str, Any]) -> None:
        data = json.dumps(record, indent=2, sort_keys=True, default=str).encode()
        self._write_atomic(f"{self.failures_dir(sweep)}/{key}.json", data)

    def clear_failure(self, sweep: str, key: str) -> None:
        path = f"{self.failures_dir(sweep)}/{key}.json"
        if self._exists(path):
            self.fs.delete_file(path)

    def failures(self, sweep: str) -> dict[str, dict[str, Any]]:
        out = {}
        for path in self._list(self.failures_dir(sweep), ".json"):
            with self.fs.open_input_stream(path) as f:
                out[path.rsplit("/", 1)[1][: -len(".json")]] = json.loads(f.read())
        return out

    # ----- queries -----------------------------------------------------------------------------
    def connect(self, sweep: str, files: Iterable[str] | None = None):  # -> duckdb.DuckDBPyConnection
        """A DuckDB connection with a view `results` over the sweep's files (empty if none yet)."""
        import duckdb

        con = duckdb.connect()
        files = list(self.result_files(sweep) if files is None else files)
        if not files:
            con.register("results_empty", RESULT_SCHEMA.empty_table())
            con.execute("CREATE VIEW results AS SELECT * FROM results_empty")
        elif self.local:
            listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)  # DDL takes no parameters
            con.execute(f"CREATE VIEW results AS SELECT * FROM read_parquet([{listed}], union_by_name = true)")
        else:
            # DuckDB's own remote-file extension downloads at run time; a pyarrow dataset does not.
            import pyarrow.dataset as ds

            con.register("results_arrow", ds.dataset(files, filesystem=self.fs, format="parquet"))
            con.execute("CREATE VIEW results AS SELECT * FROM results_arrow")
        return con

    def read_results(self, sweep: str):  # -> pandas.DataFrame
        return self.connect(sweep).execute("SELECT * FROM results").df()


def rows_to_table(rows: Sequence[dict[str, Any]], *, sweep: str, key: str) -> pa.Table:
    """Rows (dicts with the cell fields and one evaluation each) as a table in the fixed schema."""
    unknown = set().union(*(r.keys() for r in rows)) - set(RESULT_COLUMNS)
    if unknown:
        raise ValueError(f"cell {key}: columns not in the store schema: {sorted(unknown)}")
    columns = {}
    for name in RESULT_COLUMNS:
        if name == "schema_version":
            columns[name] = [SCHEMA_VERSION] * len(rows)
        elif name == "sweep":
            columns[name] = [sweep] * len(rows)
        elif name == "cell_key":
            columns[name] = [key] * len(rows)
        else:
            columns[name] = [r.get(name) for r in rows]
    return pa.Table.from_pydict(columns, schema=RESULT_SCHEMA)
