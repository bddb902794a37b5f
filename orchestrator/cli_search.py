"""`augworth best SWEEP`: what the sweep's adaptive search found (analysis/search.py computes it). Starts no Ray."""

from __future__ import annotations

import json
import math
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from .answers import best_frame, best_records
from .cli_common import DEFAULT_STORE, BadInput, JsonOpt, StoreOpt, SweepArg, out, show, user_errors

GridOpt = Annotated[list[str] | None, typer.Option(
    "--grid", help="Another sweep in the store whose grid points count too: the searched policy's for the grid's "
                   "best, the reference's for the exchange rate (repeatable).")]


def _num(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.{digits}g}" if isinstance(v, float) else str(v)


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
    params = [c for c in frame.columns if c.startswith("param_")]
    table = Table("study", "trials", *[p.removeprefix("param_") for p in params], "selected: accuracy (95% CI)",
                  "v (95% CI)", "confirmed: accuracy (95% CI)", "v (95% CI)", "(x+v)/x", "grid best (95% CI)",
                  "cells: search / grid", title="best points: selected by the search, confirmed on fresh seeds")
    for r in frame.to_dict("records"):
        grid_text = "-"
        if r.get("grid_points"):
            point = ", ".join(f"{k.removeprefix('grid_')} {_num(r[k])}" for k in r if k.startswith("grid_")
                              and k.removeprefix("grid_") in ("strength", "lr", "momentum", "weight_decay"))
            grid_text = (f"{r['grid_accuracy']:.4f} ({_num(r['grid_ci_low'])}-{_num(r['grid_ci_high'])}) at {point}")
        if r["confirm_state"] == "done":
            confirmed = (f"{r['confirm_accuracy']:.4f} ({_num(r['confirm_accuracy_ci_low'])}-"
                         f"{_num(r['confirm_accuracy_ci_high'])}), {r['confirm_seeds']} seeds")
            confirmed_v, ratio = _v(r, "confirm_"), r["confirm_ratio_text"]
        else:
            confirmed, confirmed_v, ratio = r["confirm_state"], "-", r["ratio_text"]
        table.add_row(r["study"], f"{r['complete']} complete, {r['pruned']} pruned",
                      *[_num(r[p]) for p in params],
                      f"{r['accuracy']:.4f} ({_num(r['accuracy_ci_low'])}-{_num(r['accuracy_ci_high'])})",
                      _v(r, ""), confirmed, confirmed_v, ratio or "-", grid_text,
                      f"{r['search_cells']} / {r.get('grid_cells', 0) if r.get('grid_points') else '-'}")
    show(table)
    out.print("selected: the best trial's mean over the search's seeds, t interval over them; the best of the study's "
              "trials, so optimistic (as is the grid's best). confirmed: the same point trained again on fresh seeds "
              f"(`search.confirm`): the figure to quote. v: against the grid's {reference!r} curve, its seeds "
              "resampled whole.", highlight=False)
    for r in frame.to_dict("records"):
        out.print(f"{r['study']}: {r['confirm_note']}", highlight=False)


def _v(r: dict[str, Any], prefix: str) -> str:
    """v (CI) as the one formatter writes it, and its note."""
    text = f"{r[prefix + 'v_text'] or '-'}" + (f" {r[prefix + 'v_ci_text']}" if r[prefix + "v_ci_text"] else "")
    return text + (f" ({r[prefix + 'v_note']})" if r[prefix + "v_note"] else "")
