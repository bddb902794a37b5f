"""What one cell holds while it trains, and how many cells a cluster trains at once: one answer for the grid's
trials (`runner.py`) and the search's (`search.py`)."""

from __future__ import annotations

from typing import Any


def cell_bundle(execution: Any) -> dict[str, float]:
    """A trial's placement group bundle while it trains one cell. A fraction of a GPU packs cells:
    gpus_per_cell 0.25 places four on each GPU."""
    return {"CPU": execution.cpus_per_cell, "GPU": execution.gpus_per_cell}


def holds_a_cell(node: dict[str, float], bundle: dict[str, float]) -> bool:
    """Whether a node's resources hold one `bundle` (a head started with 0 CPUs holds none)."""
    return all(node.get(name, 0.0) >= need for name, need in bundle.items() if need)


def concurrent_cells(cluster: dict[str, float], bundle: dict[str, float], max_concurrent: int | None = None) -> int:
    """How many `bundle`s the cluster's resources hold at once (the scarcest resource decides), at most
    `max_concurrent`."""
    fits = max(1, int(min(cluster.get(name, 0.0) // need for name, need in bundle.items() if need)))
    return min(fits, max_concurrent) if max_concurrent else fits
