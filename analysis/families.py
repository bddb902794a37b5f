"""Other curve families than the paper's, as a check on what its fit claims beyond the measured sizes.

A power law with an asymptote, e(x) = a·x^(−c) + b, can fit a reference closely over a few decades and still be
the wrong family: two power laws with no asymptote (every true v finite) look like one with b > 0, and an
error that saturates faster than any power law is misfitted by it. What the fit says inside the measured sizes
is interpolation; what it says beyond them (an extrapolated x + v, "worth more than any amount of real data") is
the family's. So the reference is fitted in two more families from the learning-curve literature (Viering &
Loog, "The shape of learning curves", 2022: pow2 and exp3), each judged by the same lack-of-fit test:

- "pure_power": a·x^(−c), no asymptote: its x + v is always finite.
- "exponential": a·exp(−c·x) + b, an asymptote approached faster than any power law.

A family whose lack of fit is significant (p < MISFIT) has no say (`verdicts.py`). Fits use the per-size means
and the same closed form for (a, b) at each rate as `fit.py` (variable projection on a log grid of rates, then
Brent's method in the best grid interval).
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from scipy.optimize import minimize_scalar

from augworth.analysis.fit import (
    A_MIN,
    C_MAX,
    C_MIN,
    EXP_C_GRID,
    MIN_SIZES,
    FloatArray,
    fit_batch,
    fit_given_c,
    inverse_power_law,
    size_means,
)

FAMILIES = ("power", "pure_power", "exponential")
PARAMETERS = {"power": 3, "pure_power": 2, "exponential": 3}
MISFIT = 0.01  # a lack-of-fit p below this: the family does not describe the means (tables.py says "misfits")
_POWER_GRID = np.geomspace(C_MIN, C_MAX, 256)


def fit_family(sizes: FloatArray, errors: FloatArray, weights: FloatArray,
               family: str) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """One fit per row of (F, n) arrays, as `fit.fit_batch` takes them: a, b, c in the caller's size units and
    the weighted squared error (NaN where a row has fewer than MIN_SIZES sizes)."""
    if family == "power":
        return fit_batch(sizes, errors, weights)[:4]
    size_of, mean_of, weight_of, within = size_means(np.asarray(sizes, float), np.asarray(errors, float),
                                                    np.asarray(weights, float))
    n = len(size_of)
    a, b, c, sse = (np.full(n, np.nan) for _ in range(4))
    grid = _POWER_GRID if family == "pure_power" else EXP_C_GRID
    for i in range(n):
        used = weight_of[i] > 0
        if used.sum() < MIN_SIZES:
            continue
        scale = size_of[i, used].max()
        t = size_of[i, used] / scale
        t = np.log(t) if family == "pure_power" else t  # u = x^(−c), or exp(−c·x), x scaled to (0, 1]
        w, m = weight_of[i, used], mean_of[i, used]

        def profile(log_rates: FloatArray, t=t, w=w, m=m) -> tuple[FloatArray, FloatArray, FloatArray]:
            rates = np.exp(np.atleast_1d(log_rates))
            if family == "pure_power":
                u = np.exp(-rates[:, None] * t[None, :])
                a_ = np.maximum((w * m * u).sum(1) / (w * u * u).sum(1), A_MIN)
                return a_, np.zeros_like(a_), (w * (m - a_[:, None] * u) ** 2).sum(1)
            moments = (w.sum(), (w * m).sum(), (w * m * m).sum())
            return fit_given_c(rates, t[:, None], m[:, None], w[:, None], *moments)

        log_grid = np.log(grid)
        best = int(np.argmin(profile(log_grid)[2]))
        lo, hi = log_grid[max(best - 1, 0)], log_grid[min(best + 1, grid.size - 1)]
        found = minimize_scalar(lambda r: float(profile(np.array([r]))[2][0]), bounds=(lo, hi), method="bounded",
                                options={"xatol": 1e-9})
        log_rate = found.x if found.success and found.fun <= profile(log_grid[best])[2][0] else log_grid[best]
        a_i, b_i, sse_i = (v[0] for v in profile(np.array([log_rate])))
        rate = float(np.exp(log_rate))
        a[i], b[i], sse[i] = (a_i * scale**rate if family == "pure_power" else a_i), b_i, sse_i + within[i]
        c[i] = rate if family == "pure_power" else rate / scale  # back to the caller's units
    return a, b, c, sse


def family_error(x: FloatArray, a: FloatArray, b: FloatArray, c: FloatArray, family: str) -> FloatArray:
    x = np.asarray(x, dtype=float)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        if family == "exponential":
            return a * np.exp(-c * x) + b
        return a * np.power(x, -c) + (0.0 if family == "pure_power" else b)


def family_inverse(e: FloatArray, a: FloatArray, b: FloatArray, c: FloatArray, family: str) -> FloatArray:
    """The size at which the family's curve reaches error e: +inf at or below its asymptote, 0 where no
    positive size is as bad (the exponential's error at x = 0 is a + b)."""
    if family == "power":
        return inverse_power_law(e, a, b, c)
    if family == "pure_power":
        return inverse_power_law(e, a, np.zeros_like(np.asarray(a, float)), c)
    e, a, b, c = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (e, a, b, c)))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(e <= b, np.inf, np.maximum(-np.log((e - b) / a) / c, 0.0))
    return np.where(np.isnan(e) | np.isnan(a) | np.isnan(b) | np.isnan(c), np.nan, out)


def lack_of_fit_p(sse: FloatArray, within: FloatArray, n_points: FloatArray, n_sizes: FloatArray,
                  family: str) -> FloatArray:
    """The F test of the family against the size means: the means' distance from the curve (k − p degrees of
    freedom) against the seeds' scatter within sizes (n − k). NaN where either has none."""
    df_lof, df_pure = n_sizes - PARAMETERS[family], n_points - n_sizes
    with np.errstate(divide="ignore", invalid="ignore"):
        f = ((sse - within) / df_lof) / (within / df_pure)
        return np.where((df_lof > 0) & (df_pure > 0) & (within > 0), stats.f.sf(f, df_lof, df_pure), np.nan)


def within_size(sizes: FloatArray, errors: FloatArray, weights: FloatArray) -> FloatArray:
    """Per row, the weighted squared scatter of points around their size's mean (what no curve can explain)."""
    return size_means(np.asarray(sizes, float), np.asarray(errors, float), np.asarray(weights, float))[3]


def reference_families(sizes: FloatArray, errors: FloatArray, weights: FloatArray, ref_ids: list[int],
                       a: FloatArray, b: FloatArray, c: FloatArray, lack_of_fit_power: FloatArray,
                       b_profile_low: FloatArray) -> dict[str, dict[str, FloatArray]]:
    """Per fit id (arrays over the F fits; NaN but at `ref_ids`, the references), each family's a, b, c, its
    lack-of-fit p and the upper end of its asymptote's profile interval as an accuracy (`asymptote_acc_high`; 1
    for the pure power law, which has no asymptote). The paper's family comes in fitted already."""
    from augworth.analysis.fit import profile_asymptote

    n = len(sizes)
    out = {"power": {"a": a, "b": b, "c": c, "lack_of_fit_p": lack_of_fit_power,
                     "asymptote_acc_high": 1.0 - b_profile_low}}
    rows = np.asarray(ref_ids, dtype=int)
    within = within_size(sizes[rows], errors[rows], weights[rows]) if rows.size else np.zeros(0)
    used = weights[rows] > 0
    n_points = used.sum(1)
    n_sizes = np.array([np.unique(sizes[r][u]).size for r, u in zip(rows, used, strict=True)], dtype=float)
    for family in ("pure_power", "exponential"):
        arrays = {k: np.full(n, np.nan) for k in ("a", "b", "c", "lack_of_fit_p", "asymptote_acc_high")}
        if rows.size:
            fa, fb, fc, fsse = fit_family(sizes[rows], errors[rows], weights[rows], family)
            arrays["a"][rows], arrays["b"][rows], arrays["c"][rows] = fa, fb, fc
            arrays["lack_of_fit_p"][rows] = lack_of_fit_p(fsse, within, n_points, n_sizes, family)
            arrays["asymptote_acc_high"][rows] = 1.0 if family == "pure_power" else 1.0 - profile_asymptote(
                sizes[rows], errors[rows], weights[rows], fsse, family="exponential")[0]
        out[family] = arrays
    return out
