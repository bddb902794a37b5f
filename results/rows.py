"""The one row builder: a cell's evaluations as store rows, each with the cell's fields and what reproduces it.

Needs neither pyarrow nor torch, so the training command line builds the same rows where only torch is.
"""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Iterable, Mapping
from importlib import metadata
from typing import Any

from augworth.search_spaces.cells import PROBE_COLUMNS, Cell, canonical_json

# One evaluation: which, its result, the training time up to it, and the probes at its step (or None).
EVALUATION_COLUMNS: tuple[str, ...] = ("step", "final", "eval_set", "accuracy", "loss", "n_eval", "train_seconds",
                                       *PROBE_COLUMNS, "eval_set_fingerprint")


def augworth_version() -> str:
    """The installed package's version (pyproject.toml is its one source); a bare checkout says so."""
    try:
        return metadata.version("augworth")
    except metadata.PackageNotFoundError:
        return "0+checkout"


def cell_rows(cell: Cell, evaluations: Iterable[Mapping[str, Any]], *, param_count: int, device: str,
              torch_version: str, code_revision: str | None = None,
              provenance: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per evaluation (a mapping with EVALUATION_COLUMNS; missing probes are None). `provenance`: columns
    of the schema that say where the cell came from and are not part of its key (a search's study, trial and
    confirmation); the rows are complete when they leave here."""
    base = cell.to_dict() | {
        "cell_key": cell.cell_key,
        "param_count": param_count,
        "host": socket.gethostname(),
        "device": device,
        "torch_version": str(torch_version),  # torch.__version__ is a TorchVersion: unpickling it imports torch
        "augworth_version": augworth_version(),
        "code_revision": code_revision,
        "created_at": dt.datetime.now(dt.UTC),
        "config_json": canonical_json(cell),
    } | dict(provenance or {})
    return [base | {name: e.get(name) for name in EVALUATION_COLUMNS} for e in evaluations]
