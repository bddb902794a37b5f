"""What the verbs compute and print, below the command modules (which import it, never one another): the exchange
rates of `analyze` and `demo`, a comparison, a search's best points for `best` and `report`."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

from augworth.analysis.sweep import DEFAULT_BOOTSTRAP

from .cli_common import BadInput, open_sweep, out, results_place, show


def analyze_sweep(sweep: str, store_root: str, *, eval_set: str | None, as_json: bool, out_dir: Path | None,
                  reference: str, n_bootstrap: int = DEFAULT_BOOTSTRAP, seed: int = 0,
                  pair: tuple[str, str] | None = None, weights: str = "equal", brief: bool = False) -> None:
    """`brief`: the in-distribution table only, a line per shifted eval set, and the command for the rest."""
    from augworth.analysis import AnalysisInputError, analyze
    from augworth.analysis.sweep import sweep_results
    from augworth.analysis.tables import probe_table, summary_table
    from augworth.results import connect

    store = open_sweep(store_root, sweep)
    try:
        if pair is not None:
            if n_bootstrap < 0:
                raise AnalysisInputError(f"--bootstrap {n_bootstrap}: give 0 (no intervals) or a number of resamples")
            results, _ = sweep_results(store, sweep, reference=reference, eval_set=eval_set)
            compare_sweep(results, pair, reference=reference, n_bootstrap=n_bootstrap or DEFAULT_BOOTSTRAP,
                          seed=seed, as_json=as_json)
            return
        result = analyze(store, sweep, reference=reference, eval_set=eval_set, n_bootstrap=n_bootstrap, seed=seed,
                         weights=weights)
    except AnalysisInputError as exc:
        raise BadInput(str(exc)) from None
    if as_json:
        sys.stdout.write(result.rates.to_json(orient="records") + "\n")
        return
    if out_dir is None:
        out_dir = Path(store.location(sweep, "figures")) if store.local else Path("augworth-figures") / sweep
    pictures = result.draw(out_dir)
    for name in result.eval_sets[:1] if brief else result.eval_sets:
        table = summary_table(result.rates_on(name))
        table.title = f"exchange rates on '{name}': v = f_ref⁻¹(f_aug(x)) − x"
        show(table)
        out.print("pictures: {}\n          {}".format(*pictures[name]), highlight=False)
    if brief:
        lines = result.shift_lines()
        if lines:
            out.print("\nthe shifted eval sets, v [95% CI] at the smallest size (their tables: --eval-set NAME):",
                      highlight=False, markup=False)
            for line in lines:
                out.print(f"  {line}", highlight=False, soft_wrap=True, markup=False)
        out.print(f"\nevery table and picture in one file: augworth report {sweep} --store {store_root}; pictures "
                  f"of every eval set: {out_dir}", highlight=False, soft_wrap=True, markup=False)
        return
    probed = connect(store, sweep).execute(
        "SELECT * FROM results WHERE grad_noise IS NOT NULL OR flatness IS NOT NULL OR hessian_top_eig IS NOT NULL"
    ).df()
    if not probed.empty:
        show(probe_table(probed))
    out.print(f"store: {results_place(store, sweep)}", highlight=False)


def compare_sweep(results, pair: tuple[str, str], *, reference: str, n_bootstrap: int, seed: int,
                  as_json: bool) -> None:
    from augworth.analysis.comparisons import compare
    from augworth.analysis.tables import compare_table

    try:
        rows = compare(results, *pair, reference=reference, n_bootstrap=n_bootstrap, seed=seed)
    except ValueError as exc:
        raise BadInput(f"--compare: {str(exc).removeprefix('compare: ')}") from None
    if as_json:
        sys.stdout.write(rows.to_json(orient="records") + "\n")
        return
    if rows.empty:
        raise BadInput(f"--compare: no group has {pair[0]!r}, {pair[1]!r} and {reference!r} together")
    for name in sorted(rows["eval_set"].unique(), key=lambda name: (name != "test", name)):
        frame = rows[rows["eval_set"] == name]
        show(compare_table(frame, title=f"{pair[0]} vs {pair[1]} on '{name}', each against {reference}"))


def best_frame(store: str, sweep: str, *, grid: list[str] | None = None, reference: str = "none",
               n_bootstrap: int = 1000, seed: int = 0):  # -> pandas.DataFrame
    """The `best` table of a sweep (the report's section too)."""
    import pandas as pd

    from augworth.analysis.search import best_points, read_confirmations, read_trials
    from augworth.results import read_results
    from augworth.search_spaces import confirm_eval_set, confirm_seeds, parse_spec

    from .storage import storage_url

    opened = open_sweep(store, sweep)
    spec = parse_spec(opened.read_spec(sweep), opened.spec_source(sweep))
    if spec.search is None:
        raise BadInput(f"sweep {sweep!r} has no search block: `augworth analyze {sweep}` reports its grid")
    url = storage_url(spec, opened)
    if "://" not in url and not Path(url).exists():  # a journal the driver reaches: a local file
        raise BadInput(f"sweep {sweep!r} has not started its search yet ({url} not found)")
    trials = read_trials(url, sweep)
    results = read_results(opened, sweep, final_only=True)
    grid_rows = None
    if grid:
        grid_rows = pd.concat([read_results(open_sweep(store, other), other, final_only=True) for other in grid],
                              ignore_index=True)
    return best_points(results, trials, objective=spec.search.objective.eval_set,
                       confirm_eval_set=confirm_eval_set(spec), confirm_seeds=len(confirm_seeds(spec)),
                       confirmations=read_confirmations(url, sweep), reference=reference, grid=grid_rows,
                       n_bootstrap=n_bootstrap, seed=seed)


CONFIRM_FIELDS = ("state", "seeds", "seeds_wanted", "eval_set", "same_eval_set", "accuracy_mean", "accuracy_ci_low",
                  "accuracy_ci_high", "v", "v_ci_low", "v_ci_high", "ratio", "unbounded", "v_censored", "v_bound_low",
                  "v_text", "v_ci_text", "ratio_text", "v_note", "note")


def best_records(frame) -> list[dict[str, Any]]:  # frame: pandas.DataFrame
    """`best --json`: per study, the selected figure's columns and the confirmation as one object `confirm`."""
    import json

    records = json.loads(frame.to_json(orient="records"))  # NaN and inf as null: JSON has neither
    for record in records:
        flat = {k.removeprefix("confirm_"): record.pop(k) for k in list(record) if k.startswith("confirm_")}
        flat["accuracy_mean"] = flat.pop("accuracy", None)
        record["confirm"] = {k: flat.get(k) for k in CONFIRM_FIELDS}
    return records


def _num(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.{digits}g}" if isinstance(v, float) else str(v)


def _v(r: dict[str, Any], prefix: str) -> str:
    """v (CI) as the one formatter writes it, and its note."""
    text = f"{r[prefix + 'v_text'] or '-'}" + (f" {r[prefix + 'v_ci_text']}" if r[prefix + "v_ci_text"] else "")
    return text + (f" ({r[prefix + 'v_note']})" if r[prefix + "v_note"] else "")


def best_table(frame, reference: str = "none"):  # frame: pandas.DataFrame (`best_frame`) -> rich.table.Table
    """`augworth best`'s table, which the report shows too: per study, the selected and the confirmed figures and
    the grid's best, every v through `formatting.rate_text` (`search.py`), every cell escaped for rich."""
    from rich.markup import escape
    from rich.table import Table

    params = [c for c in frame.columns if c.startswith("param_")]
    table = Table("study", "trials", *[p.removeprefix("param_") for p in params], "selected: accuracy (95% CI)",
                  "v (95% CI)", "confirmed: accuracy (95% CI)", "v (95% CI)", "(x+v)/x", "grid best (95% CI)",
                  "cells: search / grid", title="best points: selected by the search, confirmed on fresh seeds",
                  caption_justify="left", caption="selected: the best trial's mean over the search's seeds, t interval "
                  "over them; the best of the study's trials, so optimistic (as is the grid's best). confirmed: the "
                  "same point trained again on fresh seeds (`search.confirm`): the figure to quote. v: against the "
                  f"grid's {reference!r} curve, its seeds resampled whole.")
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
        cells = [r["study"], f"{r['complete']} complete, {r['pruned']} pruned", *[_num(r[p]) for p in params],
                 f"{r['accuracy']:.4f} ({_num(r['accuracy_ci_low'])}-{_num(r['accuracy_ci_high'])})",
                 _v(r, ""), confirmed, confirmed_v, ratio or "-", grid_text,
                 f"{r['search_cells']} / {r.get('grid_cells', 0) if r.get('grid_points') else '-'}"]
        table.add_row(*(escape(str(cell)) for cell in cells))  # "[inf, inf]" is text, not markup
    return table
