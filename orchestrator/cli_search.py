"""`augworth best SWEEP`: what the sweep's adaptive search found (analysis/search.py computes it). Starts no Ray."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from .answers import best_frame, best_records, best_table
from .cli_common import DEFAULT_STORE, BadInput, JsonOpt, StoreOpt, SweepArg, out, show, user_errors

GridOpt = Annotated[list[str] | None, typer.Option(
    "--grid", help="Another sweep in the store whose grid points count too: the searched policy's for the grid's "
                   "best, the reference's for the exchange rate (repeatable).")]


@user_errors
def best(
    sweep: SweepArg,
    store: StoreOpt = DEFAULT_STORE,
    grid: GridOpt = None,
    reference: Annotated[str, typer.Option("--reference", help="The grid's reference treatment.")] = "none",
    bootstrap: Annotated[int, typer.Option("--bootstrap", help="Resamples of whole seeds for v's interval.")] = 1000,
    as_json: JsonOpt = False,
) -> None:
    """Per study of the sweep's search: the best point as selected and as confirmed on fresh seeds, each with its
    mean accuracy over seeds (95% t interval) and its exchange rate against the grid's reference curve, and the
    grid's best at the same size where one exists."""
    if bootstrap < 1:
        raise BadInput(f"--bootstrap {bootstrap}: v's interval needs resamples (try 1000)")
    frame = best_frame(store, sweep, grid=grid, reference=reference, n_bootstrap=bootstrap)
    if as_json:
        sys.stdout.write(json.dumps(best_records(frame)) + "\n")
        return
    if frame.empty:
        out.print(f"sweep {sweep}: no study has a complete trial yet", highlight=False)
        return
    show(best_table(frame, reference))
    for r in frame.to_dict("records"):
        out.print(f"{r['study']}: {r['confirm_note']}", highlight=False)

