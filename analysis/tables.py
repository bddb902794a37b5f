"""The terminal tables of `augworth query`, `analyze` and `status` (rich), built from frames and records.

Names a user types again (presets, treatments, eval sets, cell keys, notes) are kept `whole`; long text
folds. Printing, and the page width, are the command line's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Column, Table
from rich.text import Text

from augworth.search_spaces.cells import LABEL_COLUMNS, treatment_label

from .formatting import EXTRAPOLATION_LIMIT, difference, difference_interval, flag, missing, number, rate_text, v_text

if TYPE_CHECKING:
    import pandas as pd

SHORT_TEXT = 64  # a query's text column whose values are all this short is taken whole, longer text folds


def whole(table: Table, *headers: str) -> Table:
    """Never cut or fold these columns' cells: the table shrinks its other columns first."""
    for column in table.columns:
        if column.header in headers:
            column.no_wrap = True
            column.min_width = max([len(str(column.header)), *(Text.from_markup(str(c)).cell_len
                                                               for c in column.cells)])
    return table


cell_text = number  # a value in a table cell: "" where missing, floats to 4 significant digits


def frame_table(df: pd.DataFrame, title: str | None = None) -> Table:
    """Any frame (a query's result): short text whole (names, keys), longer text (config_json) folded."""
    rows = [[cell_text(v) for v in row] for row in df.itertuples(index=False)]
    short = [str(c) for i, c in enumerate(df.columns) if all(len(r[i]) <= SHORT_TEXT for r in rows)]
    table = Table(*[Column(str(c), overflow="fold") for c in df.columns], title=title)
    for row in rows:
        table.add_row(*[escape(v) for v in row])
    return whole(table, *short)


def varying(frame: pd.DataFrame, columns: Iterable[str] = LABEL_COLUMNS) -> list[str]:
    """The label columns whose values differ across the frame's rows."""
    return [c for c in columns if c in frame and frame[c].astype(str).nunique() > 1]


def label(fields: Mapping[str, Any], varying_columns: list[str]) -> str:
    return escape(treatment_label(fields, varying_columns))  # rich would read '[...]' as markup


def shift_lines(rates: pd.DataFrame, in_distribution: str = "test") -> list[str]:
    """What the shifted eval sets say, a line each: every treatment's v with its interval at the smallest size
    (where augmentation is worth most), as the exchange-rate tables print them. Plain text (no markup)."""
    rows = rates[~rates["is_reference"]] if "is_reference" in rates else rates
    labelled = varying(rows)
    lines = []
    for name in sorted(set(rows["eval_set"]) - {in_distribution}):
        mine = rows[rows["eval_set"] == name]
        x = int(mine["data_size"].min())
        at = mine[mine["data_size"] == x].to_dict("records")
        reasons = {str(d.get("fit_reason")) for d in at if d.get("fit_ok") is False}
        if len(reasons) == 1 and all(d.get("fit_ok") is False for d in at):  # e.g. a reference flat on this set
            lines.append(f"{name}: {reasons.pop()}")
            continue
        parts = []
        for d in at:
            text = rate_text(d)
            shown = text.v + (f" {text.ci}" if text.ci else "") if d.get("fit_ok") is not False else "no fit"
            parts.append(f"{treatment_label(d, labelled)} {shown}")
        lines.append(f"{name} at x = {x}: " + "; ".join(parts))
    return lines


def probe_table(probed: pd.DataFrame) -> Table:
    """Probes per treatment, size and step: mean ± sd over seeds."""
    from .probes import probe_summary  # pandas loads with the tables that need it, not for `status`

    summary = probe_summary(probed)
    probes = [c.removesuffix("_mean") for c in summary.columns if c.endswith("_mean")]
    labelled = varying(summary)
    table = Table("treatment", "size x", "step", *probes,
                  title="probes on un-augmented training images: mean ± sd over seeds")
    for r in summary.itertuples(index=False):
        d = r._asdict()
        table.add_row(label(d, labelled), str(d["data_size"]), str(d["step"]),
                      *[f"{d[p + '_mean']:.4g}" + ("" if missing(d[p + "_std"]) else f" ± {d[p + '_std']:.2g}")
                        for p in probes])
    return whole(table, "treatment")


def summary_table(rates: pd.DataFrame, extrapolation_limit: float = 2.0) -> Table:
    """One row per (treatment, size): measured and fitted accuracy, v with its interval where the frame has one,
    the ratio and what to make of them, as `formatting.rate_text` reads them."""
    has_ci = "v_ci_low" in rates
    seeds = sorted(set(rates["ci_seeds"][rates["ci_seeds"] > 0])) if has_ci else []
    caption = ("acc: mean over seeds; unbounded: every curve family that fits the reference puts its asymptote "
               "below the treatment's accuracy (worth more than any amount of real data); ≥ N: v censored at what "
               "the measurements support, a 95% bound (indeterminate: the fit says unbounded, the data do not; or "
               "the families "
               f"that fit disagree, or the power law misfits); > N: x + v past {extrapolation_limit:g} × the largest "
               "reference size; extrapolated: x + v outside the reference's measured sizes; misfits: the curve "
               "misses the size means beyond seed scatter (lack-of-fit F test, p < 0.01)")
    if has_ci:
        caption += (f"; 95% CI of v: whole seeds resampled, paired across treatments ({'/'.join(map(str, seeds))} "
                    "seeds; expanded percentile)")
    table = Table("treatment", "size x", "acc", "acc fit", "extra v", *(["95% CI of v"] if has_ci else []),
                  "(x+v)/x", "note", caption=caption, caption_justify="left")
    rows = rates[~rates["is_reference"]] if "is_reference" in rates else rates
    labelled = varying(rows)  # what tells rows apart besides the policy: views, invariance, the model ...
    for r in rows.itertuples(index=False):
        d = r._asdict()
        text = rate_text(d, extrapolation_limit)
        table.add_row(label(d, labelled), str(d["data_size"]), cell_text(d.get("accuracy_mean")),
                      cell_text(d.get("accuracy_fit")), escape(text.v), *([escape(text.ci)] if has_ci else []),
                      escape(text.ratio), escape(text.note))
    return whole(table, "treatment", "note", *(["95% CI of v"] if has_ci else []))


def compare_table(rows: pd.DataFrame, title: str) -> Table:
    """`analyze --compare`: per size, v of both treatments, their difference with its interval, the test."""
    table = Table("size x", "v first", "v second", "v first − second", "95% CI", "seeds", "p (sign flip)",
                  "p (table)", "differs", title=title, caption="95% CI: whole seeds resampled, one draw for both "
                  "treatments and the reference; p: signs of log(x+v_first) − log(x+v_second) flipped over seeds; "
                  "p (table): family-wise over this table's rows (max-T: the seeds' signs flipped together for all); "
                  "≥ N: v censored at what the measurements support (a 95% bound), as `analyze` censors it; a "
                  "difference with it is a bound and no claim of the test",
                  caption_justify="left")
    for d in rows.to_dict("records"):
        limit = d.get("ref_size_max", math.inf) * EXTRAPOLATION_LIMIT
        censored = flag(d.get("v_diff_censored"))
        table.add_row(str(d["data_size"]), *(escape(v_text(d, k, limit)) for k in ("v_first", "v_second")),
                      escape(difference(d, "v_first", "v_second", "v_diff", limit)),
                      "" if censored else escape(difference_interval(d["v_diff_ci_low"], d["v_diff_ci_high"], limit)),
                      str(d["n_seeds"]), f"{d['p_sign_flip']:.3g}", cell_text(d["p_family"]),
                      "censored" if censored else "too few seeds" if missing(d["differs"]) else
                      "yes" if d["differs"] else "no")
    return whole(table, "95% CI")


def status_tables(status: Any, states: Iterable[str]) -> list[Table]:
    """`augworth status`: cells per treatment and per size in each state, then the failed cells."""
    states = list(states)
    tables = []
    for title, rows, keys in (("per treatment", status.by_treatment, status.treatment_columns),
                              ("per data size", status.by_size, ["data_size"])):
        table = Table(*keys, *states, title=title)
        for row in rows:
            table.add_row(*[cell_text(row[k]) for k in keys], *[str(row[s]) for s in states])
        tables.append(whole(table, *keys))
    if getattr(status, "search", None):
        from .search import STATES as SEARCH_STATES

        table = Table("study", *SEARCH_STATES, "confirmation", title="search trials per study")
        for row in status.search:
            confirm = (f"trial {row['confirm_trial']}: {row['confirm_done']}/{row['confirm_cells']} cells"
                       if "confirm_trial" in row else "-")
            table.add_row(row["study"], *[str(row[s]) for s in SEARCH_STATES], confirm)
        tables.append(whole(table, "study"))
    if status.failed:
        table = Table("cell_key", "treatment", "size", "seed", Column("reason", overflow="fold"), title="failed cells")
        for f in status.failed:
            table.add_row(f["cell_key"], label(f, []), str(f["data_size"]), str(f["seed"]), escape(f["reason"]))
        tables.append(whole(table, "cell_key", "treatment"))
    return tables
