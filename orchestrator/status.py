"""Where a sweep stands, from the store alone: its grid, done cells, failure records and running cells.

Works while a sweep runs and after its driver died; needs neither Ray nor torch.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from augworth.results import Store, StoreError
from augworth.search_spaces.cells import LABEL_COLUMNS

from .lock import SweepLock

STATES = ("done", "failed", "running", "missing")
# a design sweep trains the cells its targets need, not its grid: a cell it has not picked is not missing
DESIGN_STATES = ("done", "failed", "running", "unchosen")


@dataclass
class SweepStatus:
    sweep: str
    totals: dict[str, int]
    by_treatment: list[dict[str, Any]]
    by_size: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    driver: dict[str, Any] | None  # the lock's holder while a driver runs
    notes: list[str] = field(default_factory=list)
    treatment_columns: list[str] = field(default_factory=lambda: ["augmentation", "strength"])
    search: list[dict[str, Any]] = field(default_factory=list)  # per study: trials complete, running, pruned, failed
    design: list[str] = field(default_factory=list)  # per target of a design: its interval against its tolerance
    states: tuple[str, ...] = STATES  # DESIGN_STATES for a design sweep


def sweep_status(store: Store, sweep: str) -> SweepStatus:
    grid = store.read_grid(sweep)
    if grid is None:
        raise StoreError(f"sweep {sweep!r} has no grid.parquet: it was never started by `augworth run`")
    frame = grid.to_pylist()  # plain rows: `status` loads no pandas (the command answers in well under 1 s)
    done = store.done_keys(sweep)
    failures = store.failures(sweep)
    lock = SweepLock(store, sweep)
    holder = lock.holder()  # a live driver's record (the OS lock or the lease says so, never a pid)
    live = holder is not None
    dead = None if live else lock.dead_holder()
    running = set(store.read_running(sweep)) if live else set()
    design = design_lines(store, sweep)
    states = DESIGN_STATES if design else STATES

    def state(key: str) -> str:
        if key in done:
            return "done"
        if key in running:
            return "running"
        return "failed" if key in failures else states[-1]

    for row in frame:
        row["state"] = state(row["cell_key"])
    totals = {s: sum(r["state"] == s for r in frame) for s in states} | {"cells": len(frame)}

    def table(by: list[str]) -> list[dict[str, Any]]:
        counts: dict[tuple, Counter] = {}
        for r in frame:
            counts.setdefault(tuple(_value(r.get(c)) for c in by), Counter())[r["state"]] += 1
        return [dict(zip(by, key, strict=True)) | {s: counts[key][s] for s in states}
                for key in sorted(counts, key=lambda k: [(v is None, v if v is not None else 0) for v in k])]

    failed = [
        {"cell_key": r["cell_key"], "augmentation": r["augmentation"], "strength": r["strength"],
         "data_size": r["data_size"], "seed": r["seed"],
         "reason": str(failures[r["cell_key"]].get("reason", "")).splitlines()[0] if failures[r["cell_key"]].get(
             "reason") else ""}
        for r in frame if r["state"] == "failed"
    ]
    notes = []
    if dead is not None:
        notes.append(f"a driver (pid {dead.get('pid')} on {dead.get('host')}) died without finishing: "
                     "run it again to go on")
    treatment = ["augmentation", "strength"] + [
        c for c in LABEL_COLUMNS if len({str(r.get(c)) for r in frame}) > 1]
    search = search_counts(store, sweep)
    if search and dead is not None and any(s["running"] for s in search):
        notes.append("search trials marked running belong to the dead driver: `augworth resume` settles them "
                     "against the store (told where their cells are there, else run again under their numbers)")
    return SweepStatus(sweep, totals, table(treatment), table(["data_size"]), failed,
                       holder if live else None, notes, treatment, search, design, states)


def design_lines(store: Store, sweep: str) -> list[str]:
    """A design's state, a line for where it stands and one per target (none without a design block)."""
    text = store.read_spec(sweep)
    if "design" not in text:  # as for the search: parse only where it may be there
        return []
    from augworth.search_spaces import parse_spec

    spec = parse_spec(text, store.spec_source(sweep))
    if spec.design is None:
        return []
    from .designs import design_now, stop_line, target_lines

    state = design_now(store, spec)
    return [stop_line(state), *target_lines(state)]


def _value(v: Any) -> Any:
    return None if isinstance(v, float) and math.isnan(v) else v


def search_counts(store: Store, sweep: str) -> list[dict[str, Any]]:
    """Trials per study of the sweep's search (none without a search block, or before its first trial). The
    frozen spec is only read for its search block: status works on whatever the store holds."""
    from augworth.search_spaces.yaml_strict import YamlError, load_yaml

    text = store.read_spec(sweep)
    if "search" not in text:  # parsing a large spec costs more than the rest of `status`
        return []
    try:
        spec = load_yaml(text)
    except YamlError:
        return []
    search = spec.get("search") if isinstance(spec, dict) else None
    if not isinstance(search, dict):
        return []
    from augworth.analysis.search import read_confirmations, read_trials, trial_counts

    from .storage import sweep_storage_url

    url = sweep_storage_url(store, sweep, search.get("storage"))
    if "://" not in url and not Path(url).exists():  # a journal the driver reaches: a local file
        return []
    return trial_counts(read_trials(url, sweep), read_confirmations(url, sweep), store.done_keys(sweep))
