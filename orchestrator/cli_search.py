"""`augworth best SWEEP`: what the sweep's adaptive search found (analysis/search.py computes it). Starts no Ray."""

from __future__ import annotations

import math
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from .cli_common import DEFAULT_STORE, BadInput, JsonOpt, StoreOpt, SweepArg, app, open_sweep, out, show, user_errors

GridOpt = Annotated[list[str] | None, typer.Option(
    "--grid", help="Another sweep in the store whose grid points count too: the searched policy's for the grid's "
                   "best, the reference's for the exchange rate (repeatable).")]


def best_frame(store: str, sweep: str, *, grid: list[str] | None = None, reference: str = "none",
               n_bootstrap: int = 1000, seed: int = 0):  # -> pandas.DataFrame
    """The `best` table of a sweep (the report's section too)."""
    import pandas as pd

    from analysis.search import best_points, read_trials
    from results import read_results
    from search_spaces import parse_spec

    from .storage import storage_url

    opened = open_sweep(store, sweep)
    spec = parse_spec(opened.read_spec(sweep), f"{opened.sweep_dir(sweep)}/spec.yaml")
    if spec.search is None:
        raise BadInput(f"sweep {sweep!r} has no search block: `augworth analyze {sweep}` reports its grid")
    url = storage_url(spec, opened)
    if "://" not in url and not opened.files.exists(url):
        raise BadInput(f"sweep {sweep!r} has not started its search yet ({url} not found)")
    trials = read_trials(url, sweep)
    results = read_results(opened, sweep, final_only=True)
    grid_rows = None
    if grid:
        grid_rows = pd.concat([read_results(open_sweep(store, other), other, final_only=True) for other in grid],
                              ignore_index=True)
    return best_points(results, trials, objective=spec.search.objective.eval_set, reference=reference,
                       grid=grid_rows, n_bootstrap=n_bootstrap, seed=seed)


def _num(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.{digits}g}" if isinstance(v, float) else str(v)


@app.command()
@user_errors
def best(
    sweep: SweepArg,
    store: StoreOpt = DEFAULT_STORE,
    grid: GridOpt = None,
    reference: Annotated[str, typer.Option("--reference", help="The grid's reference treatment.")] = "none",
    bootstrap: Annotated[int, typer.Option("--bootstrap", help="Resamples of whole seeds for v's interval.")] = 1000,
    as_json: JsonOpt = False,
) -> None:
    """Per study of the sweep's search: the best point with its mean accuracy over seeds (95% t interval), its
    exchange rate against the grid's reference curve, and the grid's best at the same size where one exists."""
    if bootstrap < 1:
        raise BadInput(f"--bootstrap {bootstrap}: v's interval needs resamples (try 1000)")
    frame = best_frame(store, sweep, grid=grid, reference=reference, n_bootstrap=bootstrap)
    if as_json:
        sys.stdout.write(frame.to_json(orient="records") + "\n")
        return
    if frame.empty:
        out.print(f"sweep {sweep}: no study has a complete trial yet", highlight=False)
        return
    params = [c for c in frame.columns if c.startswith("param_")]
    table = Table("study", "trials", *[p.removeprefix("param_") for p in params], "accuracy (95% CI)",
                  "v (95% CI)", "(x+v)/x", "grid best (95% CI)", "cells: search / grid", title="best points")
    for r in frame.to_dict("records"):
        grid_text = "-"
        if r.get("grid_points"):
            point = ", ".join(f"{k.removeprefix('grid_')} {_num(r[k])}" for k in r if k.startswith("grid_")
                              and k.removeprefix("grid_") in ("strength", "lr", "momentum", "weight_decay"))
            grid_text = (f"{r['grid_accuracy']:.4f} ({_num(r['grid_ci_low'])}-{_num(r['grid_ci_high'])}) at {point}")
        v_text = (f"{_num(r['v'])} ({_num(r['v_ci_low'])} .. {_num(r['v_ci_high'])})"
                  + (f" {r['v_note']}" if r.get("v_note") else ""))
        table.add_row(r["study"], f"{r['complete']} complete, {r['pruned']} pruned",
                      *[_num(r[p]) for p in params],
                      f"{r['accuracy']:.4f} ({_num(r['accuracy_ci_low'])}-{_num(r['accuracy_ci_high'])})",
                      v_text, _num(r["ratio"], 3), grid_text,
                      f"{r['search_cells']} / {r.get('grid_cells', 0) if r.get('grid_points') else '-'}")
    show(table)
    out.print("accuracy: mean over the best trial's seeds, t interval over them; picked as the best of the study's "
              "trials, so optimistic (train the point again with fresh seeds to measure it). v: against the "
              f"grid's {reference!r} curve, seeds resampled (the point and the curve share them).", highlight=False)
