"""Figures of a sweep: scaling curves with their power-law fits, and effective extra samples (Eq. 1).

Matplotlib is imported inside the functions and draws on a bare `Figure` with the Agg canvas: no pyplot, no
global backend switch, no display needed, and importing `analysis` stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from augworth.analysis.fit import power_law
from augworth.analysis.treatments import Key, row_key
from augworth.analysis.verdicts import EXTRAPOLATION_LIMIT
from augworth.results import GROUP_COLUMNS, TREATMENT_COLUMNS
from augworth.search_spaces.cells import LABEL_COLUMNS, treatment_label

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MAX_PANELS = 6  # groups drawn per figure; the title says when more were left out
EXTEND = 1.5  # fitted lines run this factor beyond the measured sizes (dashed)
REFERENCE_EXTEND_MAX = 10.0  # the reference's dashed line may reach this far, to show where Eq. 1 reads it
_REFERENCE_COLOR = "black"



def plot_scaling_curves(
    results: pd.DataFrame, rates: pd.DataFrame, path: str | Path, *, eval_set: str
) -> Path:
    """Accuracy against data size (log x) on one eval set, one panel per group, one colour per treatment.

    Points: the mean over seeds with ± one standard deviation, and each seed as a faint dot (from
    `results`, final rows only). Lines: each treatment's fitted power law from `rates` (the output of
    `exchange_rates`), solid over its measured sizes and dashed beyond them; the reference's line reaches
    as far as Eq. 1 reads it (up to REFERENCE_EXTEND_MAX × its largest size). With bootstrap columns, each
    fit's 95% band over its sizes, and the reference's asymptote 1 − b (dotted) with its interval (shaded).
    Returns the path written.
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    rates = _rows_of(rates, eval_set, "rates")
    seeds = results
    if "final" in seeds.columns:
        seeds = seeds[seeds["final"].astype("boolean").fillna(False).to_numpy(dtype=bool)]
    seeds = seeds[(seeds["eval_set"] == eval_set).to_numpy(dtype=bool) & seeds["accuracy"].notna().to_numpy()]
    group_cols, treat_cols = _columns(rates, GROUP_COLUMNS), _columns(rates, TREATMENT_COLUMNS)
    seeds_by = _split(seeds, group_cols, treat_cols) if not seeds.empty else {}
    groups = _split(rates, group_cols, [])
    labels, colors = _treatments(rates, treat_cols)

    title = f"{eval_set}: accuracy against training samples"
    fig, axes, title = _figure(list(groups), rates, group_cols, title)
    for ax, (group, rows) in zip(axes, groups.items(), strict=False):
        widest = _equivalent_sizes(rows)
        for treatment, t_rows in _reference_first(_split(rows, [], treat_cols)):
            t_rows = t_rows.sort_values("data_size")
            color, label = colors[treatment], labels[treatment]
            dots = seeds_by.get(group + treatment)
            if dots is not None:
                ax.scatter(dots["data_size"], dots["accuracy"], s=10, color=color, alpha=0.25, linewidths=0)
            ax.errorbar(t_rows["data_size"], t_rows["accuracy_mean"], yerr=t_rows["accuracy_std"].fillna(0.0),
                        fmt="o", ms=4, capsize=2, color=color, zorder=3)
            first = t_rows.iloc[0]
            if not np.isfinite([first["a"], first["b"], first["c"]]).all():
                ax.plot([], [], "o", color=color, label=f"{label} (no fit: {first['fit_reason']})")
                continue
            lo, hi = float(t_rows["data_size"].min()), float(t_rows["data_size"].max())
            right = hi * EXTEND
            if bool(first["is_reference"]) and np.isfinite(widest):
                right = min(max(right, widest * 1.05), hi * REFERENCE_EXTEND_MAX)
            style = {"color": color, "lw": 2.2 if bool(first["is_reference"]) else 1.5}
            pieces = ((lo / EXTEND, lo, "--", None), (lo, hi, "-", label), (hi, right, "--", None))
            for x0, x1, ls, name in pieces:
                xs = np.geomspace(x0, x1, 60)
                accuracy = 1.0 - power_law(xs, first["a"], first["b"], first["c"])
                ax.plot(xs, accuracy, ls=ls, label=name, **style)
            if "accuracy_fit_ci_low" in t_rows:  # the fit's 95% band over the measured sizes
                ax.fill_between(t_rows["data_size"], t_rows["accuracy_fit_ci_low"], t_rows["accuracy_fit_ci_high"],
                                color=color, alpha=0.15, lw=0)
            if bool(first["is_reference"]) and np.isfinite(first.get("ref_asymptote_low", np.nan)):
                ax.axhline(1.0 - first["b"], color=color, ls=":", lw=1.0)  # where Eq. 1 says "unbounded"
                ax.axhspan(first["ref_asymptote_low"], first["ref_asymptote_high"], color=color, alpha=0.07, lw=0)
        ax.set_xscale("log")
        ax.set_xlabel("training samples")
        ax.set_ylabel(f"accuracy ({eval_set})")
        ax.grid(alpha=0.3, which="both", lw=0.5)
    _legend(fig, axes, [
        Line2D([], [], ls="", marker="o", color="gray", label="mean ± sd over seeds (faint: each seed)"),
        ("-", "fit, measured sizes"), ("--", "fit, extrapolated"),
        *([Patch(color="gray", alpha=0.3, label="95% band of the fit (whole seeds resampled)"),
           (":", "reference asymptote 1 − b (shaded: its 95% interval)")] if "accuracy_fit_ci_low" in rates else []),
    ])
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_effective_samples(rates: pd.DataFrame, path: str | Path, *, eval_set: str) -> Path:
    """Effective extra samples v against data size (log x, symlog y) on one eval set, per treatment.

    Filled markers: x + v inside the reference's measured sizes; hollow: extrapolated. Unbounded points
    (v = +inf, `unbounded`) are drawn as triangles at the top edge, hollow where `indeterminate`; a v whose
    x + v is past EXTRAPOLATION_LIMIT × the largest reference size is censored: a hollow caret at that bound. With
    bootstrap columns, vertical bars show the interval. A v censored by the verdicts (`v_censored`: the curve
    families that fit the reference disagree) is drawn the same way at the 95% bound the measurements support. The
    reference is the 0 line. Returns the path written.
    """
    from matplotlib.transforms import blended_transform_factory

    rates = _rows_of(rates, eval_set, "rates")
    group_cols, treat_cols = _columns(rates, GROUP_COLUMNS), _columns(rates, TREATMENT_COLUMNS)
    labels, colors = _treatments(rates, treat_cols)
    others = rates[~rates["is_reference"].astype(bool).to_numpy()]
    groups = _split(rates, group_cols, [])
    has_ci = "v_ci_low" in rates.columns

    fig, axes, title = _figure(list(groups), rates, group_cols,
                               f"{eval_set}: effective extra samples v(x) = f_ref⁻¹(f_aug(x)) − x")
    drawn = _Drawn()
    for ax, (group, _) in zip(axes, groups.items(), strict=False):
        rows = _split(others, group_cols, []).get(group, others.iloc[:0])
        finite = rows["effective_extra_samples"].to_numpy(dtype=float)
        if "beyond_extrapolation_limit" in rows:  # censored values set no axis limit
            finite = finite[~rows["beyond_extrapolation_limit"].to_numpy(dtype=bool)]
        finite = finite[np.isfinite(finite)]
        top = blended_transform_factory(ax.transData, ax.transAxes)
        for treatment, t_rows in _split(rows, [], treat_cols).items():
            finite = _draw_v(ax, t_rows.sort_values("data_size"), colors[treatment], labels[treatment], finite,
                             top=top, has_ci=has_ci, drawn=drawn)
        _v_axes(ax, rates, finite)
    _legend(fig, axes, _v_legend(rates, labels, treat_cols, drawn, has_ci=has_ci))
    fig.suptitle(title)
    return save_figure(fig, path)


@dataclass
class _Drawn:
    """What the effective-samples legend has to explain: the kinds of markers drawn on any panel."""

    unbounded: bool = False
    extrapolated: bool = False
    indeterminate: bool = False
    censored: bool = False


def _draw_v(ax: Any, t_rows: pd.DataFrame, color: Any, label: str, finite: np.ndarray, *, top: Any, has_ci: bool,
            drawn: _Drawn) -> np.ndarray:
    """One treatment's v on one panel (markers as `plot_effective_samples` says); returns the finite values the
    panel's axis spans, with this treatment's censoring bounds added."""
    x = t_rows["data_size"].to_numpy(dtype=float)
    v = t_rows["effective_extra_samples"].to_numpy(dtype=float)
    if not t_rows["fit_ok"].any():
        ax.plot([], [], "x", color="gray", label=f"{label} (no v: {t_rows['fit_reason'].iloc[0]})")
        return finite
    # censored: x + v past the extrapolation limit; drawn at that bound, hollow, not at the curve's number
    censored = (t_rows["beyond_extrapolation_limit"].to_numpy(dtype=bool)
                if "beyond_extrapolation_limit" in t_rows else np.zeros(len(v), dtype=bool)) & np.isfinite(v)
    bound = EXTRAPOLATION_LIMIT * t_rows["ref_size_max"].to_numpy(dtype=float) - x
    if "v_censored" in t_rows:  # families that fit disagree, or the power law misfits: the measured bound
        measured = t_rows["v_censored"].to_numpy(dtype=bool) & ~t_rows["indeterminate"].to_numpy(dtype=bool)
        measured &= np.isfinite(v)
        bound = np.where(measured, t_rows["v_bound_low"].to_numpy(dtype=float), bound)
        censored |= measured
    shown = np.isfinite(v) & ~censored
    if censored.any():
        ax.plot(x[censored], bound[censored], marker=6, ls="", ms=9, mfc="white", mec=color, mew=1.3)
        finite = np.concatenate([finite, bound[censored][np.isfinite(bound[censored])]])
        drawn.censored = True
    extrapolated = t_rows["extrapolated"].to_numpy(dtype=bool)
    unbounded = t_rows["unbounded"].to_numpy(dtype=bool)
    indeterminate = (t_rows["indeterminate"].to_numpy(dtype=bool) if "indeterminate" in t_rows
                     else np.isposinf(v) & ~unbounded)
    ax.plot(x[shown], v[shown], "-", color=color, lw=1.5, label=label)
    ax.plot(x[shown & ~extrapolated], v[shown & ~extrapolated], "o", color=color, ms=5)
    hollow = shown & extrapolated
    ax.plot(x[hollow], v[hollow], "o", ms=5, mfc="white", mec=color, mew=1.3)
    if unbounded.any():
        ax.plot(x[unbounded], np.full(unbounded.sum(), 0.97), "^", ms=8, color=color, transform=top, clip_on=False)
    if indeterminate.any():  # the fit alone says unbounded: hollow, and no number drawn
        ax.plot(x[indeterminate], np.full(indeterminate.sum(), 0.97), "^", ms=8, mfc="white", mec=color,
                mew=1.3, transform=top, clip_on=False)
    if has_ci:
        low = t_rows["v_ci_low"].to_numpy(dtype=float)
        high = t_rows["v_ci_high"].to_numpy(dtype=float)
        bars = shown & np.isfinite(low)
        cap = np.nanmax(np.abs(finite)) * 10 if finite.size else 1.0  # an infinite end: past the edge
        ax.vlines(x[bars], low[bars], np.minimum(high[bars], cap), color=color, alpha=0.5, lw=1.2)
    drawn.indeterminate |= bool(indeterminate.any())
    drawn.unbounded |= bool(unbounded.any())
    drawn.extrapolated |= bool((shown & extrapolated).any())
    return finite


def _v_axes(ax: Any, rates: pd.DataFrame, finite: np.ndarray) -> None:
    linthresh = max(1.0, float(rates["data_size"].min()))
    ax.axhline(0.0, color=_REFERENCE_COLOR, lw=1.0)
    ax.set_xscale("log")
    # the measured sizes, also where no treatment has a v to draw (a log axis needs positive limits)
    ax.set_xlim(float(rates["data_size"].min()) / 1.5, float(rates["data_size"].max()) * 1.5)
    ax.set_yscale("symlog", linthresh=linthresh)
    if finite.size:  # a decade of headroom each side (symlog), the top one for the unbounded markers
        ax.set_ylim(min(-linthresh, finite.min() * 10), max(linthresh, finite.max() * 10))
    ax.set_xlabel("training samples x")
    ax.set_ylabel("effective extra samples v")
    ax.grid(alpha=0.3, which="major", lw=0.5)


def _v_legend(rates: pd.DataFrame, labels: dict[Key, str], treat_cols: list[str], drawn: _Drawn, *,
              has_ci: bool) -> list[Any]:
    """The legend's entries for what every panel shares: the reference's line and each kind of marker drawn."""
    from matplotlib.lines import Line2D

    reference = rates[rates["is_reference"].astype(bool).to_numpy()]
    name = labels[row_key(reference[treat_cols].iloc[0])] if len(reference) else "reference"
    extras: list[Any] = [
        Line2D([], [], color=_REFERENCE_COLOR, lw=1.0, label=f"{name}: the reference (v = 0)")
    ]
    if drawn.extrapolated:
        extras.append(Line2D([], [], ls="", marker="o", mfc="white", mec="gray",
                             label="x + v outside the reference's measured sizes"))
    if drawn.unbounded:
        extras.append(Line2D([], [], ls="", marker="^", color="gray",
                             label="unbounded: accurate past the reference's asymptote interval (v = +∞)"))
    if drawn.censored:
        extras.append(Line2D([], [], ls="", marker=6, mfc="white", mec="gray",
                             label=f"censored, drawn at the bound: x + v past {EXTRAPOLATION_LIMIT:g} × the largest "
                             "reference size, or v ≥ what the measurements support (curve families disagree)"))
    if drawn.indeterminate:
        extras.append(Line2D([], [], ls="", marker="^", mfc="white", mec="gray",
                             label="indeterminate: below the reference's asymptote by the fit, not by the data"))
    if has_ci:
        extras.append(Line2D([], [], color="gray", alpha=0.5, label="95% interval, whole seeds resampled"))
    return extras


# ----- helpers -------------------------------------------------------------------------------------


def _rows_of(rates: pd.DataFrame, eval_set: str, what: str) -> pd.DataFrame:
    rows = rates[(rates["eval_set"] == eval_set).to_numpy(dtype=bool)]
    if rows.empty:
        have = sorted(map(str, pd.unique(rates["eval_set"])))
        raise ValueError(f"no {what} rows for eval set {eval_set!r} (have: {', '.join(have) or 'none'})")
    return rows


def _columns(frame: pd.DataFrame, names: Sequence[str]) -> list[str]:
    return [name for name in names if name in frame.columns]


def _split(frame: pd.DataFrame, first: list[str], second: list[str]) -> dict[Key, pd.DataFrame]:
    """Rows by the key of `first` + `second` columns (missing values equal), in order of appearance."""
    cols = [*first, *second]
    if not cols:
        return {(): frame}
    keys = [row_key(row) for row in frame[cols].itertuples(index=False, name=None)]
    index: dict[Key, list[int]] = {}
    for i, k in enumerate(keys):
        index.setdefault(k, []).append(i)
    return {k: frame.iloc[rows] for k, rows in index.items()}


def _treatments(rates: pd.DataFrame, treat_cols: list[str]) -> tuple[dict[Key, str], dict[Key, Any]]:
    """A legend label and a colour per treatment, stable across panels; the reference in black."""
    from matplotlib import colormaps

    varying = [c for c in treat_cols if c in LABEL_COLUMNS and _varies(rates[c])]
    palette = colormaps["tab10"].colors  # type: ignore[attr-defined]  # a ListedColormap
    labels: dict[Key, str] = {}
    colors: dict[Key, Any] = {}
    for treatment, rows in _split(rates, [], treat_cols).items():
        labels[treatment] = treatment_label(dict(zip(treat_cols, treatment, strict=True)), varying)
        if bool(rows["is_reference"].iloc[0]):
            colors[treatment] = _REFERENCE_COLOR
        else:
            n_colored = sum(1 for c in colors.values() if c != _REFERENCE_COLOR)
            colors[treatment] = palette[n_colored % len(palette)]
    return labels, colors


def _reference_first(parts: dict[Key, pd.DataFrame]) -> list[tuple[Key, pd.DataFrame]]:
    """Treatments with the reference first, so it heads the legend."""
    return sorted(parts.items(), key=lambda item: not bool(item[1]["is_reference"].iloc[0]))


def _varies(column: pd.Series) -> bool:
    return len({row_key([v]) for v in column}) > 1


def _equivalent_sizes(rows: pd.DataFrame) -> float:
    """The largest finite x + v in a group: how far to the right Eq. 1 reads the reference's curve."""
    x_equiv = (rows["data_size"] + rows["effective_extra_samples"]).to_numpy(dtype=float)
    x_equiv = x_equiv[np.isfinite(x_equiv)]
    return float(x_equiv.max()) if x_equiv.size else float("nan")


def _figure(
    groups: list[Key], rates: pd.DataFrame, group_cols: list[str], title: str
) -> tuple[Figure, list[Axes], str]:
    """One panel per group (at most MAX_PANELS), each titled by the group fields that differ."""
    from matplotlib.figure import Figure

    shown = groups[:MAX_PANELS]
    if len(groups) > len(shown):
        title += f"\n(first {len(shown)} of {len(groups)} groups)"
    n_cols = min(len(shown), 3)
    n_rows = -(-len(shown) // n_cols)
    fig = Figure(figsize=(6.0 * n_cols + 3.2, 4.6 * n_rows), layout="constrained")  # + the legend
    axes = list(np.atleast_1d(fig.subplots(n_rows, n_cols, squeeze=False)).ravel())
    for ax in axes[len(shown):]:
        ax.set_visible(False)
    varying = [c for c in group_cols if _varies(rates[c])]
    for ax, group in zip(axes, shown, strict=False):
        values = dict(zip(group_cols, group, strict=True))
        ax.set_title(", ".join(f"{c}={values[c]}" for c in varying), fontsize=9)
    return fig, axes[: len(shown)], title


def _legend(fig: Figure, axes: list[Axes], extras: list[Any]) -> None:
    """One legend right of the panels: every labelled artist (deduplicated), then the style notes."""
    from matplotlib.lines import Line2D

    handles: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    for extra in extras:
        if isinstance(extra, tuple):  # (line style, label): a grey line sample
            extra = Line2D([], [], color="gray", ls=extra[0], label=extra[1])
        handles.setdefault(extra.get_label(), extra)
    fig.legend(handles.values(), handles.keys(), loc="outside right center", fontsize=8)


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write the figure as a PNG at `path` (its folder made), for every picture of the analysis."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path
