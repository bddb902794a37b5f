"""What an exchange rate may claim: model-free bounds from the measurements, how far x + v reaches beyond
the measured reference sizes, and when "worth more than any amount of real data" is supported.

The power law's asymptote b is often barely identified: the squared error can stay flat from b = 0.25 to
b = 0 on a sweep whose largest size is far from saturation. So a treatment whose fitted error at x falls
below the reference's fitted b is `unbounded` only where its measured accuracy at x exceeds the upper end of
the reference's asymptote interval (from the same seed resampling as v's interval); otherwise it is
`indeterminate`, and the model-free lower bound says what the data do support.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from augworth.analysis.formatting import EXTRAPOLATION_LIMIT  # noqa: F401  (x + v beyond it is shown as "> bound")


def measured_bounds(points: pd.DataFrame, fit: np.ndarray, ref_of_fit: np.ndarray, x: np.ndarray,
                    accuracy: np.ndarray, treated: list[pd.Series] | None = None, level: float = 0.95
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Per output row, bounds on v from the measurements alone (no curve).

    Low: x + v ≥ S for the largest reference size S at which, and at every smaller size, the treatment at x leads
    the reference by more than the seeds' scatter explains: the lower end of the `level` t interval of its lead,
    paired over the seeds both have (Welch's where they share fewer than 2), is at least 0. So "≥ N" holds at
    that level, not only on the means (where noise can put the treatment past a reference it does not reach);
    −x where no size is led so. `treated`: per row, the treatment's accuracy by seed at x (default: its points,
    `_fit == fit`, at x). High: x + v < the smallest size whose mean the treatment's mean (`accuracy`) does not
    reach (+inf where it reaches all), on the means. Both assume only that more real data do not hurt, so a size
    counts as reached only if every smaller one is: the two bounds never cross."""
    from scipy import stats

    means = points.groupby(["_fit", "data_size"], sort=True)["accuracy"].mean()
    by_seed = _by_seed(points)  # one pass over the points: each row below only looks its sizes up
    low, high = np.full(x.size, np.nan), np.full(x.size, np.nan)
    for i in np.flatnonzero(ref_of_fit[fit] >= 0):
        r = int(ref_of_fit[fit[i]])
        ref = means.loc[r]
        best = np.maximum.accumulate(ref.to_numpy())  # more data do not hurt: what some size up to here reached
        missed = ref.index[best > accuracy[i]].to_numpy(dtype=float)
        high[i] = (missed.min() if missed.size else np.inf) - x[i]
        mine = ((treated[i].index.to_numpy(), treated[i].to_numpy(float)) if treated is not None
                else by_seed.get((int(fit[i]), float(x[i])), _NONE))
        led = [_lead_low(mine, by_seed.get((r, float(size)), _NONE), level, stats) >= 0 for size in ref.index]
        reached = ref.index[np.logical_and.accumulate(led)].to_numpy(dtype=float) if led else np.zeros(0)
        low[i] = min((reached.max() if reached.size else 0.0) - x[i], high[i])
    return low, high


_NONE = (np.zeros(0), np.zeros(0))  # a fit with no point at a size: no seeds, no accuracies


def _by_seed(points: pd.DataFrame) -> dict[tuple[int, float], tuple[np.ndarray, np.ndarray]]:
    """(fit, size) -> its seeds (sorted) and their mean accuracies."""
    per_seed = points.groupby(["_fit", "data_size", "seed"], sort=True)["accuracy"].mean()
    fits, sizes, seeds = (per_seed.index.get_level_values(i).to_numpy() for i in range(3))
    values = per_seed.to_numpy(float)
    starts = np.flatnonzero(np.r_[True, (fits[1:] != fits[:-1]) | (sizes[1:] != sizes[:-1])])
    ends = np.r_[starts[1:], values.size]
    return {(int(fits[a]), float(sizes[a])): (seeds[a:b], values[a:b]) for a, b in zip(starts, ends, strict=True)}


def _lead_low(mine: tuple[np.ndarray, np.ndarray], ref: tuple[np.ndarray, np.ndarray], level: float, stats) -> float:
    """The lower end of the t interval of mine − ref (seeds and accuracies): paired over the shared seeds where
    there are 2 or more, else Welch's; −inf where neither has 2 seeds."""
    _, in_mine, in_ref = np.intersect1d(mine[0], ref[0], return_indices=True)
    if in_mine.size >= 2:
        d = mine[1][in_mine] - ref[1][in_ref]
        se, df = d.std(ddof=1) / np.sqrt(d.size), d.size - 1
        return float(d.mean() - stats.t.ppf(0.5 + level / 2, df) * se) if se > 0 else float(d.mean())
    a, b = mine[1], ref[1]
    if a.size < 2 or b.size < 2:
        return -np.inf
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    if va + vb == 0:
        return float(a.mean() - b.mean())
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    return float(a.mean() - b.mean() - stats.t.ppf(0.5 + level / 2, df) * np.sqrt(va + vb))


def fit_diagnostics(points: pd.DataFrame, n_fits: int, a: np.ndarray, b: np.ndarray, c: np.ndarray,
                    sse: np.ndarray) -> tuple[list[str | None], np.ndarray, np.ndarray]:
    """Per fit id: which parameters sit at a bound of the model (None: none), the lack-of-fit p-value, and
    whether the measured means never fall as the size grows (by more than twice the fall's standard error).

    Lack of fit: the fit's squared error splits into the scatter of seeds around each size's mean (pure
    error, n − k degrees of freedom) and the means' distance from the curve (k − 3); F = their mean squares'
    ratio. A small p says the power law does not describe the means, beyond what seed scatter explains (NaN
    with fewer than 4 sizes or one seed per size). Seeds are correlated across sizes, so read it as a flag,
    not as an exact test.
    """
    from scipy import stats

    from augworth.analysis.fit import A_MIN, B_MAX, C_MAX, C_MIN

    by_size = points.groupby(["_fit", "data_size"], sort=True)["accuracy"]
    pure = (points["accuracy"] - by_size.transform("mean")) ** 2
    pure_ss = pure.groupby(points["_fit"]).sum().reindex(range(n_fits), fill_value=0.0).to_numpy()
    n = points.groupby("_fit").size().reindex(range(n_fits), fill_value=0).to_numpy()
    k = by_size.mean().groupby(level=0).size().reindex(range(n_fits), fill_value=0).to_numpy()
    df_lof, df_pure = k - 3, n - k
    with np.errstate(divide="ignore", invalid="ignore"):
        f = ((sse - pure_ss) / df_lof) / (pure_ss / df_pure)
        p = np.where((df_lof > 0) & (df_pure > 0) & (pure_ss > 0), stats.f.sf(f, df_lof, df_pure), np.nan)
    # the fit's floor on a is in its own units (sizes over the fit's largest): a·x_max^(−c) there
    largest = points.groupby("_fit")["data_size"].max().reindex(range(n_fits)).to_numpy(dtype=float)
    with np.errstate(invalid="ignore", over="ignore"):
        a_scaled = a * largest ** -c
    at_bound: list[str | None] = []
    for i in range(n_fits):
        flags = [name for name, hit in (("a at its floor", a_scaled[i] <= A_MIN * 1.0001),
                                        ("b = 0", b[i] <= 1e-9), ("b at 1", b[i] >= B_MAX - 1e-9),
                                        ("c at its floor", c[i] <= C_MIN * 1.0001),
                                        ("c at its ceiling", c[i] >= C_MAX * 0.9999)) if hit]
        at_bound.append(", ".join(flags) if flags else None)
    means, errors = by_size.mean(), (by_size.std() / np.sqrt(by_size.count())).fillna(0.0)
    monotone = np.ones(n_fits, dtype=bool)
    for i in means.index.get_level_values(0).unique():
        m, se = means.loc[i].to_numpy(), errors.loc[i].to_numpy()
        # a fall counts when it exceeds twice its standard error: three seeds' noise alone is not a flag
        monotone[int(i)] = bool(np.all(np.diff(m) >= -2.0 * np.hypot(se[1:], se[:-1])))
    return at_bound, p, monotone


def accuracy_lower_bound(mean: np.ndarray, std: np.ndarray, n: np.ndarray, level: float = 0.95) -> np.ndarray:
    """The t interval's lower end of a mean accuracy over n seeds (−inf with one seed: no scatter to judge)."""
    from scipy import stats

    n = np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        half = stats.t.ppf(0.5 + level / 2, n - 1) * np.asarray(std, float) / np.sqrt(n)
    return np.where(n >= 2, np.asarray(mean, float) - np.nan_to_num(half, nan=np.inf), -np.inf)


def flat_references(points: pd.DataFrame, ref_fits: Iterable[int]) -> dict[int, str]:
    """Reference fits whose accuracy does not rise from their smallest to their largest size beyond twice the
    difference's standard error (flat, or at chance at every size): no exchange rate is defined against them.
    Fit id -> the reason, in words."""
    out = {}
    for f in ref_fits:
        rows = points[points["_fit"] == f]
        sizes = np.sort(rows["data_size"].unique())
        if sizes.size < 2:
            continue
        first, last = (rows.loc[rows["data_size"] == s, "accuracy"] for s in (sizes[0], sizes[-1]))
        gain = last.mean() - first.mean()
        se = np.sqrt(first.var(ddof=1) / len(first) + last.var(ddof=1) / len(last)) if min(len(first), len(last)) > 1 \
            else 0.0
        if not gain > 2.0 * np.nan_to_num(se):
            out[int(f)] = (f"the reference does not improve with data (accuracy {first.mean():.4g} at {sizes[0]:g}, "
                           f"{last.mean():.4g} at {sizes[-1]:g}): no exchange rate")
    return out


def reach(x_equiv: np.ndarray, size_lo: np.ndarray, size_hi: np.ndarray, limit: float) -> np.ndarray:
    """Where x + v falls: 0 below the reference's measured sizes, 1 inside them, 2 beyond them up to `limit` times
    the largest, 3 further, 4 at +inf (NaN stays NaN). Two curves agree on a verdict where they agree on this."""
    with np.errstate(invalid="ignore"):
        out = np.select([x_equiv < size_lo * (1 - 1e-9), x_equiv <= size_hi * (1 + 1e-9),
                         x_equiv <= limit * size_hi * (1 + 1e-9), np.isfinite(x_equiv)], [0.0, 1.0, 2.0, 3.0], 4.0)
    return np.where(np.isnan(x_equiv), np.nan, out)


def family_verdicts(*, ok: np.ndarray, own: np.ndarray, below_asymptote: np.ndarray, extrapolated: np.ndarray,
                    x: np.ndarray, x_equiv: np.ndarray, lower_acc: np.ndarray, asymptote_high: np.ndarray | None,
                    ref: dict[str, dict[str, np.ndarray]], e_aug: np.ndarray, size_lo: np.ndarray,
                    size_hi: np.ndarray, limit: float) -> dict[str, np.ndarray]:
    """What a row may claim once every family that fits the reference has had its say (families.py).

    `ref[family]` holds, per row, its reference's fit in that family (a, b, c), its lack-of-fit p and the upper
    end of its asymptote's profile interval as an accuracy (`asymptote_acc_high`; 1 for the pure power law,
    which has none). A family fits where p ≥ MISFIT (or is NaN: too few sizes to tell).

    - unbounded: some family fits, and for each one that does, the treatment's accuracy at x (the lower end of
      its t interval over seeds) lies above that family's asymptote interval (and above the bootstrap's, for
      the power law, so never without a bootstrap): the data show the reference saturating below what the
      treatment measures. A fitting pure power law, which has no asymptote, always vetoes it.
    - families_disagree: x + v extrapolated (or unbounded) by the paper's curve while a fitting other family gives
      another verdict (`reach`: below, inside, beyond the measured sizes, past `limit` times the largest, +inf).
    - v_censored: v is no number to quote; the measured bound (v_bound_low) is: indeterminate rows, and
      extrapolated rows whose families disagree or whose reference the paper's curve misfits.
    Also x_plus_v_<family> for the other families (NaN where the family does not fit the reference).
    """
    from augworth.analysis.families import MISFIT, family_inverse

    fits = {name: np.nan_to_num(ref[name]["lack_of_fit_p"], nan=1.0) >= MISFIT for name in ref}
    beyond = {name: lower_acc > ref[name]["asymptote_acc_high"] for name in ref}
    # the seed-clustered bootstrap's asymptote interval too: without a bootstrap, no row is unbounded
    beyond["power"] &= below_asymptote & (lower_acc > asymptote_high if asymptote_high is not None else False)
    any_fits = np.logical_or.reduce([fits[name] for name in ref])
    all_beyond = np.logical_and.reduce([~fits[name] | beyond[name] for name in ref])
    unbounded = ok & ~own & any_fits & all_beyond & (asymptote_high is not None)
    out: dict[str, np.ndarray] = {"unbounded": unbounded, "indeterminate": ok & ~own & below_asymptote & ~unbounded}
    disagree = np.zeros(x.size, dtype=bool)
    for name in ref:
        if name == "power":
            continue
        p = ref[name]
        xv = np.where(fits[name], family_inverse(np.clip(e_aug, 0.0, 1.0), p["a"], p["b"], p["c"], name), np.nan)
        out[f"x_plus_v_{name}"] = np.where(ok & ~own, xv, np.nan)
        disagree |= fits[name] & (reach(xv, size_lo, size_hi, limit) != reach(x_equiv, size_lo, size_hi, limit))
    leaned = ok & ~own & (extrapolated | below_asymptote | unbounded)
    out["families_disagree"] = leaned & disagree & ~unbounded
    out["v_censored"] = out["indeterminate"] | (leaned & ~unbounded & (out["families_disagree"] | ~fits["power"]))
    return out


def holdout_largest(sizes: np.ndarray, errors: np.ndarray, weights: np.ndarray, fits: list[int]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Extrapolation, checked: each of `fits` (rows of the (F, n) arrays) fitted again without its largest size,
    which that curve then predicts. Per row of the arrays: predicted minus measured mean accuracy there, and the
    size at which the curve without it reaches the measured mean, over the largest size (1: spot on; 2: it
    would have needed twice the samples). NaN where a fit has fewer than 4 sizes."""
    from augworth.analysis.fit import MIN_SIZES, fit_batch, inverse_power_law, power_law

    error, ratio = np.full(len(sizes), np.nan), np.full(len(sizes), np.nan)
    rows = [f for f in fits if np.unique(sizes[f][weights[f] > 0]).size > MIN_SIZES]
    if not rows:
        return error, ratio
    largest = np.array([sizes[f][weights[f] > 0].max() for f in rows])
    at_largest = sizes[rows] == largest[:, None]
    w = np.where(at_largest, 0.0, weights[rows])
    a, b, c, _, _ = fit_batch(sizes[rows], errors[rows], w)
    there = at_largest & (weights[rows] > 0)
    measured = np.array([np.average(errors[f][m], weights=weights[f][m]) for f, m in zip(rows, there, strict=True)])
    error[rows] = measured - power_law(largest, a, b, c)  # accuracy predicted minus measured
    ratio[rows] = inverse_power_law(measured, a, b, c) / largest
    return error, ratio
