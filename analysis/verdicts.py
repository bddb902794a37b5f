"""What an exchange rate may claim: model-free bounds from the measured means, how far x + v reaches beyond
the measured reference sizes, and when "worth more than any amount of real data" is supported.

The power law's asymptote b is often barely identified: the squared error can stay flat from b = 0.25 to
b = 0 on a sweep whose largest size is far from saturation. So a treatment whose fitted error at x falls
below the reference's fitted b is `unbounded` only where its measured accuracy at x exceeds the upper end of
the reference's asymptote interval (from the same seed resampling as v's interval); otherwise it is
`indeterminate`, and the model-free lower bound says what the data do support.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

EXTRAPOLATION_LIMIT = 2.0  # x + v beyond this many times the largest reference size: shown as "> bound"


def measured_bounds(points: pd.DataFrame, fit: np.ndarray, ref_of_fit: np.ndarray, x: np.ndarray,
                    accuracy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per output row, bounds on v from the measured means alone (no curve): the treatment at x is at least as
    accurate as the reference at its largest measured size whose mean accuracy it reaches (x + v ≥ that
    size; −x where it reaches none), and less accurate than at the smallest size whose mean it does not
    reach (x + v < that size; +inf where it reaches all). Assumes only that more real data do not hurt, so a
    size counts as reached only if no smaller size's mean beats the treatment: the two bounds never cross."""
    means = points.groupby(["_fit", "data_size"], sort=True)["accuracy"].mean()
    low, high = np.full(x.size, np.nan), np.full(x.size, np.nan)
    for i in np.flatnonzero(ref_of_fit[fit] >= 0):
        ref = means.loc[int(ref_of_fit[fit[i]])]
        best = np.maximum.accumulate(ref.to_numpy())  # more data do not hurt: what some size up to here reached
        reached = ref.index[best <= accuracy[i]].to_numpy(dtype=float)
        missed = ref.index[best > accuracy[i]].to_numpy(dtype=float)
        low[i] = (reached.max() if reached.size else 0.0) - x[i]
        high[i] = (missed.min() if missed.size else np.inf) - x[i]
    return low, high


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

    from analysis.fit import A_MIN, B_MAX, C_MAX, C_MIN

    by_size = points.groupby(["_fit", "data_size"], sort=True)["accuracy"]
    pure = (points["accuracy"] - by_size.transform("mean")) ** 2
    pure_ss = pure.groupby(points["_fit"]).sum().reindex(range(n_fits), fill_value=0.0).to_numpy()
    n = points.groupby("_fit").size().reindex(range(n_fits), fill_value=0).to_numpy()
    k = by_size.mean().groupby(level=0).size().reindex(range(n_fits), fill_value=0).to_numpy()
    df_lof, df_pure = k - 3, n - k
    with np.errstate(divide="ignore", invalid="ignore"):
        f = ((sse - pure_ss) / df_lof) / (pure_ss / df_pure)
        p = np.where((df_lof > 0) & (df_pure > 0) & (pure_ss > 0), stats.f.sf(f, df_lof, df_pure), np.nan)
    at_bound: list[str | None] = []
    for i in range(n_fits):
        flags = [name for name, hit in (("a at its floor", a[i] <= A_MIN * 1.0001),
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
