"""The store's row: one per (cell, eval set, evaluation step), in a fixed Arrow schema.

Later versions only add nullable columns; readers see nulls where an older file lacks one. Imports neither
Ray nor torch nor DuckDB.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from augworth.search_spaces.cells import GROUP_COLUMNS, PROBE_COLUMNS, TREATMENT_COLUMNS

__all__ = ["GROUP_COLUMNS", "PROBE_COLUMNS", "RESULT_COLUMNS", "RESULT_SCHEMA", "SCHEMA_VERSION", "SORT_ORDER",
           "TREATMENT_COLUMNS", "conform", "parquet_bytes", "rows_to_table"]

SCHEMA_VERSION = 5  # 2: subset, views_first_clean, accumulate, flatness_std; 3: normalize, eval_set_fingerprint;
# 4: search_study, search_trial; 5: search_confirm
SORT_ORDER = (("cell_key", "ascending"), ("step", "ascending"), ("eval_set", "ascending"))

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
        # the model's parameter count, and the probes at this step (null where not probed)
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
        # added in version 2 (absent from version-1 files: readers see nulls)
        pa.field("views_first_clean", pa.bool_()),
        pa.field("subset", pa.string()),
        pa.field("accumulate", pa.int64()),
        pa.field("flatness_std", pa.float64()),
        # added in version 3
        pa.field("normalize", pa.bool_()),
        pa.field("eval_set_fingerprint", pa.string()),
        # added in version 4: provenance of a searched cell (the Optuna study and trial number); not in cell_key
        pa.field("search_study", pa.string()),
        pa.field("search_trial", pa.int64()),
        # added in version 5: the cell confirms trial search_trial's point on a seed the search never used
        pa.field("search_confirm", pa.bool_()),
    ]
)
RESULT_COLUMNS: tuple[str, ...] = tuple(RESULT_SCHEMA.names)


def conform(table: pa.Table) -> pa.Table:
    """A table read from one file in the current schema: columns an older version lacks become nulls."""
    for f in RESULT_SCHEMA:
        if f.name not in table.column_names:
            table = table.append_column(f.name, pa.nulls(len(table), f.type))
    return table.select(list(RESULT_COLUMNS)).cast(RESULT_SCHEMA)


def rows_to_table(rows: Sequence[dict[str, Any]], *, sweep: str, key: str) -> pa.Table:
    """Rows (dicts with the cell fields and one evaluation each) as a table in the fixed schema."""
    unknown = set().union(*(r.keys() for r in rows)) - set(RESULT_COLUMNS)
    if unknown:
        raise ValueError(f"cell {key}: columns not in the store schema: {sorted(unknown)}")
    columns: dict[str, list[Any]] = {}
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


def parquet_bytes(table: pa.Table, *, row_group_rows: int | None = None, ordered: bool = False) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    options: dict[str, Any] = {}
    if row_group_rows is not None:
        options["row_group_size"] = row_group_rows
    if ordered:  # recorded in the footer, for readers that use it
        options["sorting_columns"] = pq.SortingColumn.from_ordering(table.schema, list(SORT_ORDER))
    pq.write_table(table, sink, compression="zstd", **options)
    return sink.getvalue()
