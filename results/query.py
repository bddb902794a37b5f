"""Queries over a sweep (a DuckDB view `results` over exactly the files `Store.result_files` lists) and the
check of each store file. DuckDB is imported inside the functions that need it.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from .schema import RESULT_COLUMNS, RESULT_SCHEMA
from .store import Store


class StoreWarning(UserWarning):
    """A store file skipped by a reader (unreadable, or not in the store's schema)."""


# DuckDB's names for the Arrow types of RESULT_SCHEMA, to check a view's columns without reading data.
_DUCK_TYPES = {"int32": "INTEGER", "int64": "BIGINT", "string": "VARCHAR", "double": "DOUBLE", "bool": "BOOLEAN",
               "timestamp[us, tz=UTC]": "TIMESTAMP WITH TIME ZONE"}


def connect(store: Store, sweep: str, files: Iterable[str] | None = None) -> Any:  # duckdb.DuckDBPyConnection
    """A DuckDB connection with a view `results` over the sweep's files (empty if none yet).

    A file that cannot be read, or whose schema is not the store's, is skipped with a warning naming it
    (`augworth verify` lists them and can move them aside); the rest stays queryable.
    """
    import duckdb

    if files is None:
        state = store.layout.results_state(sweep)  # each cell once, from its content: misnamed files are left out
        for path, reason in state.misnamed.items():
            warnings.warn(f"skipping store file {path}: {reason}", StoreWarning, stacklevel=2)
        files = state.files()
    files = list(files)
    con = _connect(store, files)
    try:
        types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE results)").fetchall())
        clean = all(types.get(f.name, _DUCK_TYPES.get(str(f.type))) == _DUCK_TYPES.get(str(f.type))
                    for f in RESULT_SCHEMA) and set(types) <= set(RESULT_COLUMNS)
    except duckdb.Error:
        clean = False
    if clean:
        return con
    bad = verify(store, sweep, files)
    for path, reason in bad.items():
        warnings.warn(f"skipping store file {path}: {reason}", StoreWarning, stacklevel=2)
    return _connect(store, [f for f in files if f not in bad])

def _connect(store: Store, files: list[str]) -> Any:
    import duckdb

    con = duckdb.connect()
    if not files:
        con.register("results_empty", RESULT_SCHEMA.empty_table())
        con.execute("CREATE VIEW results AS SELECT * FROM results_empty")
    elif store.local:
        listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)  # DDL takes no parameters
        # the empty table first: every column of the schema exists even when all files are older versions
        con.register("results_empty", RESULT_SCHEMA.empty_table())
        try:
            con.execute("CREATE VIEW results AS SELECT * FROM results_empty UNION ALL BY NAME "
                        f"SELECT * FROM read_parquet([{listed}], union_by_name=true)")
        except duckdb.Error:  # an unreadable footer fails the binding: the caller checks each file
            con.execute("CREATE VIEW results AS SELECT 1 AS unreadable")
    else:
        # DuckDB's own remote-file extension downloads at run time; a pyarrow dataset does not.
        con.register("results_arrow", ds.dataset(files, schema=RESULT_SCHEMA, filesystem=store.layout.fs,
                                                 format="parquet"))
        con.execute("CREATE VIEW results AS SELECT * FROM results_arrow")
    return con

def check_file(store: Store, sweep: str, path: str) -> str | None:
    """Why a result file is bad (unreadable, not the store's schema, rows of another cell), or None."""
    try:
        schema = pq.read_schema(path, filesystem=store.layout.fs)
        for name in schema.names:
            if name not in RESULT_COLUMNS:
                return f"column {name!r} is not in the store schema"
            if not schema.field(name).type.equals(RESULT_SCHEMA.field(name).type):
                return f"column {name!r} is {schema.field(name).type}, not {RESULT_SCHEMA.field(name).type}"
        for name in ("cell_key", "sweep", "step", "final", "eval_set", "accuracy"):
            if name not in schema.names:
                return f"required column {name!r} is missing"
        table = pq.read_table(path, filesystem=store.layout.fs)  # reads every page: catches truncation
    except (OSError, pa.ArrowException) as exc:
        return f"unreadable: {str(exc).splitlines()[0]}"
    if set(table.column("sweep").unique().to_pylist()) != {sweep}:
        return "rows of another sweep"
    keys = set(table.column("cell_key").unique().to_pylist())
    name = path.rsplit("/", 1)[1][: -len(".parquet")]
    state_keys = store.layout.read_manifest(sweep).get(path.rsplit("/", 1)[1])
    expected = set(state_keys.keys) if state_keys is not None else {name}
    if keys != expected:
        return f"holds cells {sorted(keys)[:3]}... but its name or the manifest says {sorted(expected)[:3]}..."
    return None

def verified_files(store: Store, sweep: str) -> list[str]:
    """The files `verify` checks: those readers read, and the cell files whose rows are another cell's."""
    state = store.layout.results_state(sweep)
    return state.files() + sorted(state.misnamed)


def verify(store: Store, sweep: str, files: Iterable[str] | None = None) -> dict[str, str]:
    """Every bad result file of the sweep (`verified_files` by default), with the reason."""
    if files is None:
        files = verified_files(store, sweep)
    return {path: reason for path in files if (reason := check_file(store, sweep, path)) is not None}


def quarantine(store: Store, sweep: str, paths: Iterable[str]) -> list[str]:
    """Move bad files to `<sweep>/quarantine/`: their cells are no longer done, so `resume` re-runs them."""
    folder = f"{store.layout.sweep_dir(sweep)}/quarantine"
    store.layout.fs.create_dir(folder, recursive=True)
    moved = []
    for path in paths:
        target = f"{folder}/{path.rsplit('/', 1)[1]}"
        store.layout.fs.move(path, target)
        moved.append(target)
    return moved


def read_results(
    store: Store, sweep: str, *, columns: Sequence[str] | None = None, final_only: bool = False,
    grid_only: bool = False,
) -> Any:  # pandas.DataFrame (pandas loads on first use)
    """The sweep's rows as a pandas frame: all columns, or `columns`; all steps, or the final ones; every cell,
    or (`grid_only`) the grid's, without the cells of an adaptive search (their points are not a grid)."""
    if columns is None:
        select = "*"
    else:
        unknown = [name for name in columns if name not in RESULT_COLUMNS]
        if unknown:
            raise ValueError(f"columns not in the store schema: {unknown}")
        select = ", ".join(f'"{name}"' for name in columns)
    conditions = (["final"] if final_only else []) + (["search_study IS NULL"] if grid_only else [])
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    return connect(store, sweep).execute(f"SELECT {select} FROM results{where}").df()
