"""Power-law fits of test error against training-set size: e(x) = a·x^(−c) + b (the paper's family).

Constraints: a > 0, c > 0, 0 ≤ b < 1, so accuracy = 1 − e rises with x towards 1 − b.

How the fit works, and why: power-law fits are notorious for local minima and bad starting guesses. For a
fixed exponent c the model is linear in (a, b), so the best (a, b) under the box constraints has a closed form
(variable projection); evaluated on a log-spaced grid over [C_MIN, C_MAX], batched over all fits, it gives a
bracket around the global minimum. scipy refines c in that bracket — its elementwise `find_minimum` for all
fits at once (thousands of bootstrap refits cost one vectorised search), its bounded `minimize_scalar` where
the best grid point is an end of the grid — with (a, b) in closed form at every c tried. Sizes are divided
by the largest size of each fit before any power is taken, so x^(−c) is 1 at the largest size whatever the
units (10 to 200k and beyond). Only per-size means enter the fit (exact: the model predicts one error per
size, so the within-size scatter is a constant). Bootstrap replicates are the same points with resampling
counts as weights.
An exponent at C_MAX is still reported as a fit: the bounds are the model's, not a failure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize_scalar
from scipy.optimize.elementwise import find_minimum

MIN_SIZES = 3  # distinct data sizes a fit needs: three parameters
C_MIN, C_MAX = 1e-3, 5.0  # exponent range searched; c = 5 already means error ∝ x⁻⁵
A_MIN = 1e-12  # a > 0, in units where the largest size is 1
B_MAX = 1.0 - 1e-9  # b < 1
_GRID = np.geomspace(C_MIN, C_MAX, 64)
# rates of the exponential family a·exp(−c·x) + b, x scaled so the largest size is 1: from nearly linear over
# the sizes (0.05) to a decay within 1/200 of the largest size
EXP_C_GRID = np.geomspace(0.05, 1000.0, 200)
_CHUNK_ELEMENTS = 1 << 21  # rows × grid × points per batch, to bound memory (~16 MB per temporary)

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class PowerLawFit:
    """e(x) = a·x^(−c) + b fitted to (size, error) points; a, b, c are NaN when `ok` is False."""

    a: float
    b: float
    c: float
    ok: bool
    reason: str | None  # why the fit is not ok; None when it is
    n_sizes: int  # distinct sizes with a finite error
    n_points: int  # (size, error) points used
    rmse: float  # root mean squared residual on the error scale

    def error(self, sizes: ArrayLike) -> FloatArray:
        return power_law(np.asarray(sizes, dtype=float), self.a, self.b, self.c)

    def accuracy(self, sizes: ArrayLike) -> FloatArray:
        return 1.0 - self.error(sizes)

    def size_for_error(self, errors: ArrayLike) -> FloatArray:
        """The inverse f⁻¹(e): the data size at which the curve reaches error e (+inf where e ≤ b)."""
        return inverse_power_law(np.asarray(errors, dtype=float), self.a, self.b, self.c)


def power_law(x: ArrayLike, a: ArrayLike, b: ArrayLike, c: ArrayLike) -> FloatArray:
    """e(x) = a·x^(−c) + b, broadcasting over all arguments."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(a) * np.power(np.asarray(x, dtype=float), -np.asarray(c)) + np.asarray(b)


def inverse_power_law(e: ArrayLike, a: ArrayLike, b: ArrayLike, c: ArrayLike) -> FloatArray:
    """f⁻¹(e) = ((e − b)/a)^(−1/c) for e > b; +inf for e ≤ b (no finite size reaches it); NaN stays NaN."""
    e, a, b, c = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (e, a, b, c)))
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        out = np.power((e - b) / a, -1.0 / c)
    out = np.where(e <= b, np.inf, out)
    return np.where(np.isnan(e) | np.isnan(a) | np.isnan(b) | np.isnan(c), np.nan, out)


def fit_power_law(sizes: ArrayLike, errors: ArrayLike) -> PowerLawFit:
    """Fit e(x) = a·x^(−c) + b to (size, error) points, several seeds per size allowed.

    Points with a non-finite size or error are skipped. Fewer than MIN_SIZES distinct sizes, or an
    optimisation that ends non-finite, give `ok=False` with the reason; a size ≤ 0 is a ValueError.
    """
    x = np.asarray(sizes, dtype=float).ravel()
    e = np.asarray(errors, dtype=float).ravel()
    if x.shape != e.shape:
        raise ValueError(f"fit_power_law: {x.size} sizes but {e.size} errors")
    keep = np.isfinite(x) & np.isfinite(e)
    x, e = x[keep], e[keep]
    if np.any(x <= 0):
        raise ValueError(f"fit_power_law: sizes must be positive, got {x[x <= 0][:5].tolist()}")
    a, b, c, sse, reason = fit_batch(x[None, :], e[None, :], np.ones((1, x.size)))
    n = int(x.size)
    return PowerLawFit(
        a=float(a[0]), b=float(b[0]), c=float(c[0]), ok=reason[0] is None, reason=reason[0],
        n_sizes=int(np.unique(x).size), n_points=n,
        rmse=float(np.sqrt(sse[0] / n)) if n and reason[0] is None else float("nan"),
    )


def fit_batch(
    sizes: FloatArray, errors: FloatArray, weights: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, list[str | None]]:
    """Fit one power law per row of (F, n) arrays; points with weight 0 are padding (any finite values).

    Weights are point multiplicities (bootstrap counts). Returns a, b, c (a in the caller's size units),
    the weighted sum of squared residuals, and per row None or the reason it is not ok.
    """
    sizes = np.asarray(sizes, dtype=float)
    errors = np.asarray(errors, dtype=float)
    weights = np.asarray(weights, dtype=float)
    n_rows = sizes.shape[0]
    a = np.full(n_rows, np.nan)
    b, c, sse = a.copy(), a.copy(), a.copy()
    reasons: list[str | None] = [None] * n_rows

    size_of, mean_of, weight_of, within = size_means(sizes, errors, weights)
    n_sizes = np.sum(weight_of > 0, axis=1)
    fittable = n_sizes >= MIN_SIZES
    for i in np.flatnonzero(~fittable):
        reasons[i] = f"fewer than {MIN_SIZES} sizes ({n_sizes[i]})"
    rows = np.flatnonzero(fittable)
    if rows.size:
        used = weight_of[rows] > 0
        # scale by the largest size of each row: x^(−c) stays in [1, (x_max/x_min)^c]
        scale = np.max(np.where(used, size_of[rows], 0.0), axis=1)
        log_s = np.where(used, np.log(np.where(used, size_of[rows], 1.0) / scale[:, None]), 0.0)
        chunk = max(1, _CHUNK_ELEMENTS // (_GRID.size * size_of.shape[1]))
        for start in range(0, rows.size, chunk):
            part = slice(start, start + chunk)
            a_s, b_p, c_p, sse_p = _fit_scaled(log_s[part], mean_of[rows[part]], weight_of[rows[part]])
            a[rows[part]] = a_s * scale[part] ** c_p  # back to the caller's units
            b[rows[part]], c[rows[part]] = b_p, c_p
            sse[rows[part]] = sse_p + within[rows[part]]
    bad = fittable & ~(np.isfinite(a) & np.isfinite(b) & np.isfinite(c) & np.isfinite(sse))
    for i in np.flatnonzero(bad):
        reasons[i] = "optimisation failed: non-finite parameters"
        a[i] = b[i] = c[i] = sse[i] = np.nan
    return a, b, c, sse, reasons


def size_means(
    sizes: FloatArray, errors: FloatArray, weights: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Collapse each row's points to its distinct sizes: (size, mean error, total weight), (F, k) each.

    The model predicts one error per size, so Σ w (e − f(x))² = within-size SS + Σ_sizes W (ē − f(x))²:
    fitting the weighted means is exact, and the grid search costs sizes, not points (seeds × fewer).
    Also returns the within-size SS per row. Slots of a row beyond its sizes have weight 0.
    """
    n_rows, n = sizes.shape
    used = weights > 0
    order = np.argsort(np.where(used, sizes, np.inf), axis=1, kind="stable")
    s_sorted = np.take_along_axis(np.where(used, sizes, np.inf), order, axis=1)
    rank_sorted = np.concatenate(
        [np.zeros((n_rows, 1), dtype=np.intp), np.cumsum(s_sorted[:, 1:] != s_sorted[:, :-1], axis=1)], axis=1
    )
    rank = np.empty_like(rank_sorted)
    np.put_along_axis(rank, order, rank_sorted, axis=1)
    k = int(rank.max()) + 1
    flat = (np.arange(n_rows)[:, None] * k + rank).ravel()
    w, e = weights.ravel(), np.where(used, errors, 0.0).ravel()
    weight_of = np.bincount(flat, w, minlength=n_rows * k)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_of = np.where(weight_of > 0, np.bincount(flat, w * e, minlength=n_rows * k) / weight_of, 0.0)
    within = np.bincount(np.repeat(np.arange(n_rows), n), w * (e - mean_of[flat]) ** 2, minlength=n_rows)
    size_of = np.ones(n_rows * k)
    size_of[flat[used.ravel()]] = sizes.ravel()[used.ravel()]
    return (size_of.reshape(n_rows, k), mean_of.reshape(n_rows, k), weight_of.reshape(n_rows, k).astype(float),
            within.astype(float))


def _fit_scaled(
    log_s: FloatArray, m: FloatArray, w: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Rows of per-size (log scaled size, mean error, weight): a grid over c, then scipy's bounded search.

    The grid evaluates the closed-form best (a, b) for 64 exponents at once, so the bracket around its best
    point holds the global minimum; scipy's elementwise minimiser (Chandrupatla, all rows at once) refines c
    inside it, and its bounded scalar one (Brent) where the best grid point is an end of the grid.
    """
    # sizes first: numpy sums a leading axis of a few sizes far faster than a trailing one
    log_s_t, m_t, w_t = log_s.T, m.T, w.T  # (k, F)
    moments = w_t.sum(0), (w_t * m_t).sum(0), (w_t * m_t * m_t).sum(0)  # do not depend on c
    _, _, grid_sse = fit_given_c(  # (F, G)
        _GRID, log_s_t[..., None], m_t[..., None], w_t[..., None], *(v[:, None] for v in moments)
    )
    best = np.argmin(np.where(np.isfinite(grid_sse), grid_sse, np.inf), axis=1)
    log_grid = np.log(_GRID)
    lo = log_grid[np.maximum(best - 1, 0)]
    hi = log_grid[np.minimum(best + 1, _GRID.size - 1)]
    log_c = log_grid[best].copy()
    inner = np.flatnonzero((best > 0) & (best < _GRID.size - 1))
    if inner.size:  # a three-point bracket from the grid: scipy's elementwise (vectorised) minimiser refines c
        k = log_s_t.shape[0]
        cols = [v[:, inner] for v in (log_s_t, m_t, w_t)]
        args = (*(row for v in cols for row in v), *(v[inner] for v in moments))

        def sse_of(t: FloatArray, *per_size: FloatArray) -> FloatArray:
            log_s, m, w = (np.stack(per_size[j * k:(j + 1) * k]) for j in range(3))
            return fit_given_c(np.exp(t), log_s, m, w, *per_size[3 * k:])[2]

        found = find_minimum(sse_of, (lo[inner], log_c[inner], hi[inner]), args=args,
                             tolerances={"xatol": 1e-10, "xrtol": 0.0})
        better = found.success & (found.f_x <= grid_sse[inner, best[inner]])  # never worse than the grid's best
        log_c[inner[better]] = found.x[better]
    for i in np.flatnonzero((best == 0) | (best == _GRID.size - 1)):  # at a grid end: a bounded scalar search
        col = (slice(None), slice(i, i + 1))  # one fit, kept 2-D for fit_given_c's broadcasting
        moments_i = tuple(v[i : i + 1] for v in moments)

        def sse(t: float, col=col, moments_i=moments_i) -> float:
            return float(fit_given_c(np.exp(np.array([t])), log_s_t[col], m_t[col], w_t[col], *moments_i)[2][0])

        found_i = minimize_scalar(sse, bounds=(lo[i], hi[i]), method="bounded", options={"xatol": 1e-10})
        if found_i.success and found_i.fun <= grid_sse[i, best[i]]:
            log_c[i] = found_i.x
    c = np.exp(log_c)
    a, b, _ = fit_given_c(c, log_s_t, m_t, w_t, *moments)
    resid = m_t - a * np.exp(-c * log_s_t) - b
    return a, b, c, (w_t * resid * resid).sum(0)


def fit_given_c(
    c: FloatArray, log_s: FloatArray, m: FloatArray, w: FloatArray,
    s0: FloatArray, se: FloatArray, see: FloatArray,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """For exponents c (shape (...)), the best a ≥ A_MIN, 0 ≤ b ≤ B_MAX by weighted least squares.

    Per-size points have the sizes on a leading axis and broadcast against c after it: log scaled size,
    mean error m and weight w have shape (k, ...); s0, se, see are the sums of w, w·m and w·m² over k.

    The problem is a convex quadratic in (a, b) on a box, so its minimum is the unconstrained one when that
    is feasible, else the best of the minima along the three edges (a = A_MIN, b = 0, b = B_MAX).
    Candidates are compared through the moment sums; the chosen one's SSE is summed from its residuals
    (no cancellation when the fit is exact).
    """
    u = np.exp(-c * log_s)  # x^(−c) with x scaled to (0, 1]
    wu = w * u
    su, suu, sue = wu.sum(0), (wu * u).sum(0), (wu * m).sum(0)
    mu, me = su / s0, se / s0
    with np.errstate(divide="ignore", invalid="ignore"):
        a0 = (sue - su * me) / (suu - su * mu)
        b0 = me - a0 * mu
        interior = (a0 >= A_MIN) & (b0 >= 0.0) & (b0 <= B_MAX)
        edges = [
            (np.full_like(a0, A_MIN), np.clip(me - A_MIN * mu, 0.0, B_MAX)),
            (np.maximum(sue / suu, A_MIN), np.zeros_like(a0)),
            (np.maximum((sue - B_MAX * su) / suu, A_MIN), np.full_like(a0, B_MAX)),
        ]
    a, b, best = edges[0][0], edges[0][1], np.full(a0.shape, np.inf)
    for edge_a, edge_b in edges:
        sse = (see - 2 * edge_a * sue - 2 * edge_b * se
               + edge_a**2 * suu + 2 * edge_a * edge_b * su + edge_b**2 * s0)
        better = sse < best
        a, b, best = np.where(better, edge_a, a), np.where(better, edge_b, b), np.where(better, sse, best)
    a, b = np.where(interior, a0, a), np.where(interior, b0, b)
    resid = m - a * u - b
    return a, b, (w * resid * resid).sum(0)


def profile_asymptote(
    sizes: FloatArray, errors: FloatArray, weights: FloatArray, sse: FloatArray, level: float = 0.95,
    family: str = "power",
) -> tuple[FloatArray, FloatArray]:
    """Per row of (F, n) arrays (as `fit_batch` takes them, `sse` its result), the profile interval of b.

    For each b on a grid over [0, B_MAX] the squared error is minimised over a and c (a in closed form, c on a
    fine log grid); the interval holds the b whose profile error stays within SSE_min·(1 + F₁,ₙ₋₃/(n − 3)), the
    F-based profile-likelihood interval of Bates & Watts (n points, 3 parameters), rounded outwards to the grid
    (steps of 0.0025). It shows how well the data
    pin the asymptote: a curve far from saturation gives a wide one. Points are treated as independent (seeds
    are correlated across sizes), so read it as a diagnostic. NaN where a row has 3 points or fewer, or no fit.
    `family`: "power" (a·x^(−c) + b), or "exponential" (a·exp(−c·x) + b, sizes scaled as above; families.py).
    """
    from scipy import stats

    size_of, mean_of, weight_of, within = size_means(np.asarray(sizes, float), np.asarray(errors, float),
                                                    np.asarray(weights, float))
    n_points = np.sum(np.asarray(weights) > 0, axis=1)
    low, high = np.full(len(size_of), np.nan), np.full(len(size_of), np.nan)
    b_grid = np.linspace(0.0, B_MAX, 401)
    c_grid = np.geomspace(C_MIN, C_MAX, 200) if family == "power" else EXP_C_GRID
    for i in np.flatnonzero((n_points > 3) & np.isfinite(sse)):
        used = weight_of[i] > 0
        if used.sum() < MIN_SIZES:
            continue
        w, m = weight_of[i, used], mean_of[i, used]
        scaled = size_of[i, used] / size_of[i, used].max()
        t = np.log(scaled) if family == "power" else scaled  # u = x^(−c), or exp(−c·x), x scaled to (0, 1]
        u = np.exp(-c_grid[:, None] * t[None, :])  # (C, k)
        r = m[None, :] - b_grid[:, None]  # (B, k): what a·x^(−c) has to explain at each b
        a = np.maximum((r * w) @ u.T / ((w * u * u).sum(1))[None, :], A_MIN)  # (B, C)
        resid = r[:, None, :] - a[..., None] * u[None, :, :]
        profile = (w * resid * resid).sum(-1).min(1) + within[i]  # (B,)
        best = min(float(profile.min()), float(sse[i]))
        df = n_points[i] - 3
        inside = profile <= best * (1.0 + stats.f.ppf(level, 1, df) / df)
        if not inside.any():  # the grid misses a sharp minimum: the interval is narrower than its spacing
            inside[np.argmin(profile)] = True
        first, last = np.flatnonzero(inside)[[0, -1]]
        low[i], high[i] = b_grid[max(first - 1, 0)], b_grid[min(last + 1, b_grid.size - 1)]  # rounded outwards
    return low, high
