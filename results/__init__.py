"""The results store at the bottom of augworth: the row schema and its one builder, the file layer with
atomic writes (also under the lock and checkpoints), the store's contract (`Store`), compaction, queries
and verification. Imports `search_spaces` only, and neither Ray nor torch; pyarrow and DuckDB load with the
names that need them, so `results.rows` works where only torch is installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from augworth.search_spaces.lazy import lazy_exports

if TYPE_CHECKING:
    from .compaction import CompactionReport, compact
    from .files import Root, StoreError, check_sweep_name
    from .layout import MANIFEST_NAME, CompactedFile, ResultsState, SweepFiles
    from .query import StoreWarning, check_file, connect, quarantine, read_results, verify
    from .rows import EVALUATION_COLUMNS, augworth_version, cell_rows
    from .schema import (
        GROUP_COLUMNS,
        PROBE_COLUMNS,
        RESULT_COLUMNS,
        RESULT_SCHEMA,
        SCHEMA_VERSION,
        TREATMENT_COLUMNS,
        conform,
        rows_to_table,
    )
    from .store import Store

_HOMES = {
    "compaction": ("CompactionReport", "compact"),
    "files": ("Root", "StoreError", "check_sweep_name"),
    "query": ("StoreWarning", "check_file", "connect", "quarantine", "read_results", "verify"),
    "rows": ("EVALUATION_COLUMNS", "augworth_version", "cell_rows"),
    "schema": ("GROUP_COLUMNS", "PROBE_COLUMNS", "RESULT_COLUMNS", "RESULT_SCHEMA", "SCHEMA_VERSION",
               "TREATMENT_COLUMNS", "conform", "rows_to_table"),
    "layout": ("MANIFEST_NAME", "CompactedFile", "ResultsState", "SweepFiles"),
    "store": ("Store",),
}
__all__ = ["CompactedFile", "CompactionReport", "compact", "EVALUATION_COLUMNS", "GROUP_COLUMNS", "MANIFEST_NAME",
    "PROBE_COLUMNS", "RESULT_COLUMNS", "RESULT_SCHEMA", "ResultsState", "Root", "SCHEMA_VERSION", "Store",
    "StoreError", "StoreWarning", "SweepFiles", "TREATMENT_COLUMNS", "augworth_version", "cell_rows", "check_file",
    "check_sweep_name", "conform", "connect", "quarantine", "read_results", "rows_to_table", "verify"]

__getattr__ = lazy_exports(__name__, _HOMES)
