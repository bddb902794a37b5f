"""Figures of the paper's three questions (`questions.py`, `stochasticity.py`), with their 95% bands.

Exchange ratios (x + v)/x on a log axis: a band that reaches +inf (unbounded replicates) is drawn to the top of
the panel. Matplotlib draws on a bare `Figure` (no pyplot), as in `plots.py`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from augworth.analysis.plots import MAX_PANELS, save_figure

_SHIFT_STYLE = {"held-out": "-", "partly covered": "-.", "covered": ":", "undeclared": "--"}


def _panels(n: int, title: str):
    from matplotlib.figure import Figure

    shown = min(n, MAX_PANELS)
    n_cols = min(max(shown, 1), 3)
    n_rows = -(-max(shown, 1) // n_cols)
    fig = Figure(figsize=(5.2 * n_cols + 3.0, 4.0 * n_rows), layout="constrained")
    axes = list(np.atleast_1d(fig.subplots(n_rows, n_cols, squeeze=False)).ravel())
    for ax in axes[shown:]:
        ax.set_visible(False)
    fig.suptitle(title + (f"\n(first {shown} of {n})" if n > shown else ""), fontsize=10)
    return fig, axes[:shown]


RATIO_FLOOR = 1e-3  # ratios below (an augmented sample worth less than 1/1000 of a real one) are drawn here


def _ratio(x: float | np.ndarray, v: np.ndarray) -> np.ndarray:
    """(x + v)/x, floored at RATIO_FLOOR so a log axis can show it; +inf stays (a band reaching it is cut)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.maximum((x + v) / x, RATIO_FLOOR)


def _band(ax, x, low, high, color) -> None:
    top = np.nanmax(np.where(np.isfinite(high), high, np.nan)) if np.isfinite(high).any() else np.nan
    high = np.where(np.isposinf(high), top * 10 if np.isfinite(top) else np.nan, high)
    ax.fill_between(x, low, high, color=color, alpha=0.18, linewidth=0)


def _finite_ratio(x: float | np.ndarray, v: np.ndarray) -> np.ndarray:
    """The ratio where v is finite (an unbounded v is no point on a line), NaN elsewhere."""
    return np.where(np.isfinite(v), _ratio(x, v), np.nan)


def _censored(rows: pd.DataFrame, v: str) -> np.ndarray:
    """Where the verdicts censor v (`question_verdicts.py`): no number to quote, so no point and no band."""
    if f"{v}_censored" not in rows:
        return np.zeros(len(rows), bool)
    return rows[f"{v}_censored"].astype("boolean").fillna(False).to_numpy(bool)


def _quoted(rows: pd.DataFrame, v: str, end: str = "") -> np.ndarray:
    """The column `v` (or its interval's `end`) where v is a number to quote, NaN where it is censored."""
    return np.where(_censored(rows, v), np.nan, rows[f"{v}{end}"].to_numpy(float))


def _censored_marks(ax, at: np.ndarray, x: np.ndarray, rows: pd.DataFrame, v: str, color) -> None:
    """A hollow caret at `at` (the horizontal position) for each censored v, at the ratio of its measured bound
    (v ≥ it: the data say no more)."""
    bound = rows[f"{v}_bound_low"].to_numpy(float) if f"{v}_bound_low" in rows else np.full(len(rows), np.nan)
    keep = _censored(rows, v) & np.isfinite(bound)
    if keep.any():
        ax.plot(at[keep], _ratio(x[keep], bound[keep]), ls="none", marker="^", mfc="none", color=color)


def _line(ax, rows: pd.DataFrame, v: str, label: str, color, ls: str = "-") -> None:
    x = rows["data_size"].to_numpy(float)
    ax.plot(x, _finite_ratio(x, _quoted(rows, v)), ls=ls, marker="o", ms=3, color=color, label=label)
    _censored_marks(ax, x, x, rows, v, color)
    _band(ax, x, _ratio(x, _quoted(rows, v, "_ci_low")), _ratio(x, _quoted(rows, v, "_ci_high")), color)


def _finish(fig, axes, path: str | Path) -> Path:
    for ax in axes:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.axhline(1.0, color="gray", lw=0.8)
        ax.set_xlabel("training samples x")
        ax.set_ylabel("exchange ratio (x + v)/x")
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_ood(rows: pd.DataFrame, path: str | Path) -> Path:
    """One panel per treatment: its exchange ratio in distribution (black) and on each shifted set (line style:
    held-out solid, partly covered dash-dot, covered dotted, undeclared dashed), with 95% bands."""
    from matplotlib import colormaps

    treatments = list(dict.fromkeys(rows["treatment"]))
    fig, axes = _panels(len(treatments), "is an augmentation worth more data under shift? (x + v)/x per eval set")
    for ax, name in zip(axes, treatments, strict=False):
        mine = rows[rows["treatment"] == name]
        sets = list(dict.fromkeys(mine["eval_set"]))
        first = mine[mine["eval_set"] == sets[0]].sort_values("data_size")
        _line(ax, first, "v_id", f"{first['in_distribution'].iloc[0]} (in distribution)", "black")
        cmap = colormaps["tab10"]
        for i, name_set in enumerate(sets):
            one = mine[mine["eval_set"] == name_set].sort_values("data_size")
            kind = one["shift"].iloc[0]
            _line(ax, one, "v_ood", f"{name_set} ({kind})", cmap(i % 10), _SHIFT_STYLE.get(kind, "--"))
        ax.set_title(name, fontsize=9)
    return _finish(fig, axes, path)


def plot_invariance(rows: pd.DataFrame, path: str | Path) -> Path:
    """One panel per eval set: each augmentation and each invariant model (dashed), with 95% bands."""
    from matplotlib import colormaps

    sets = list(dict.fromkeys(rows["eval_set"]))
    fig, axes = _panels(len(sets), "augmentation against built-in invariance: (x + v)/x, both against the plain model")
    cmap = colormaps["tab10"]
    for ax, name in zip(axes, sets, strict=False):
        mine = rows[rows["eval_set"] == name]
        for i, aug in enumerate(dict.fromkeys(mine["augmentation"])):
            one = mine[mine["augmentation"] == aug].drop_duplicates("data_size").sort_values("data_size")
            _line(ax, one, "v_aug", aug, cmap(i % 10))
        for j, model in enumerate(dict.fromkeys(mine["invariant_model"])):
            one = mine[mine["invariant_model"] == model].drop_duplicates("data_size").sort_values("data_size")
            _line(ax, one, "v_inv", model, cmap((j + 5) % 10), "--")
        ax.set_title(name, fontsize=9)
    return _finish(fig, axes, path)


def plot_repetitions(rows: pd.DataFrame, path: str | Path) -> Path:
    """The repetition curve: per (augmentation, size, eval set) panel, the exchange ratio of fixed views against
    r, random views as a horizontal line with its band, and same-batch views against k (dashed)."""
    keys = list(dict.fromkeys(zip(rows["eval_set"], rows["augmentation"], rows["data_size"], strict=True)))
    fig, axes = _panels(len(keys), "fixed views (r augmented copies, frozen) against random views")
    for ax, (eval_set, aug, size) in zip(axes, keys, strict=False):
        mine = rows[(rows["eval_set"] == eval_set) & (rows["augmentation"] == aug) & (rows["data_size"] == size)]
        x = float(size)
        for mode, color, ls in (("fixed", "tab:blue", "-"), ("same_batch", "tab:green", "--")):
            one = mine[mine["views"] == mode].sort_values("r")
            if not one.empty:
                r = one["r"].to_numpy(float)
                ax.plot(r, _finite_ratio(x, _quoted(one, "v")), ls=ls, marker="o", color=color, label=mode)
                _censored_marks(ax, r, np.full(len(one), x), one, "v", color)
                _band(ax, r, _ratio(x, _quoted(one, "v", "_ci_low")), _ratio(x, _quoted(one, "v", "_ci_high")), color)
        random = mine[mine["views"] == "random"]
        if not random.empty:
            value, low, high = (_ratio(x, _quoted(random, "v", end))[0] for end in ("", "_ci_low", "_ci_high"))
            if np.isfinite(value):
                ax.axhline(value, color="tab:red", label="random views")
            if np.isfinite(low) and np.isfinite(high):
                ax.axhspan(low, high, color="tab:red", alpha=0.12, lw=0)
        views = mine.loc[mine["views"] != "random", "r"].to_numpy(float)
        if views.size:  # the r axis spans the views swept even where no v is finite
            ax.set_xlim(views.min() / 1.5, views.max() * 1.5)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.axhline(1.0, color="gray", lw=0.8)
        ax.set_xlabel("views r (fixed) or k (same batch)")
        ax.set_ylabel("exchange ratio (x + v)/x")
        ax.set_title(f"{aug}, x = {size}, {eval_set}", fontsize=9)
        ax.legend(fontsize=7)
    return save_figure(fig, path)
