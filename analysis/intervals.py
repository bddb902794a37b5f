"""Intervals that treat seeds as what they are: the bootstrap behind `exchange_rates(..., n_bootstrap=...)`.

A seed fixes a cell's training subset (nested across sizes), its initial weights (the same for every
treatment) and its batch order. So one seed's points are one cluster, across sizes and across treatments:
within a size, a treatment and the reference trained on the same seed move together, and one seed's
residuals at different sizes move together. A replicate therefore draws whole seeds with replacement, one
draw per group shared by every treatment of the group and its reference, and each point weighs as often as
its seed was drawn. With `subset: independent` a seed's subsets differ between sizes, but its initial weights
and batch order do not: its effect persists across sizes all the same, so whole seeds are drawn there too
(drawn within each size, coverage fell to 0.88 at small sizes with a persistent seed effect, and intervals were
far wider than needed with a shared one).

The interval is the expanded percentile interval (Hesterberg, "What teachers should know about the
bootstrap", 2015): percentiles of the replicates at the tail where a normal quantile equals
sqrt(n/(n−1))·t_{n−1}, for n clusters. That carries the two small-sample corrections a plain percentile
interval lacks (a bootstrap's spread is too narrow by sqrt((n−1)/n), and normal quantiles are too short with
n clusters), keeps the percentile method's invariance to monotone transformations (v and the exchange ratio
get the same interval), and, being order statistics, stays defined where replicates are +inf (unbounded).
With 3 seeds it is the range of the 10 distinct resamples; below 5 seeds `exchange_rates` warns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from augworth.analysis.fit import fit_batch

FEW_SEEDS = 5  # fewer seeds than this in a group: intervals are wide and their coverage poorly known
# Coverage of nominal 95% intervals measured at few seeds (`python -m bench.intervals --seeds`, synthetic sweeps
# with seed effects shared across treatments and sizes): what each entry point's warning quotes. v: the
# exchange-rate interval of `exchange_rates`; difference: the paired interval of v_A − v_B (`compare` and the
# questions).
# The design mode's stopping rule rests on the fewest seeds whose coverage reaches 0.90 (design_arms.py).
# `best`: v of the confirmation (fresh seeds, unpaired with the reference's) and v of the selected best of 50 trials,
# by seed count (`python -m bench.selection --sweeps 100 --seeds N`, 300 studies per count for the confirmation, 100
# of 50 trials for the selected; 5 seeds: docs/search.md).
MEASURED_COVERAGE: dict[str, dict[int, float]] = {"v": {2: 0.50, 3: 0.76, 4: 0.86, 5: 0.90, 10: 0.93},
                                                  "difference": {2: 0.48, 3: 0.77, 4: 0.88, 5: 0.93, 10: 0.94},
                                                  "confirmed v": {2: 0.68, 3: 0.90, 4: 0.95, 5: 0.96},
                                                  "selected v": {2: 0.08, 3: 0.32, 4: 0.51, 5: 0.54}}
_COVERAGE_OF = {"confirmed v": " for v of the confirmation", "selected v": " for v of the best of 50 trials"}


class FewSeedsWarning(UserWarning):
    """An interval rests on fewer than FEW_SEEDS seeds."""


def warn_few_seeds(what: str, seed_counts, kind: str = "v") -> None:
    """One warning, naming `what` (the entry point) and the seed counts below FEW_SEEDS among `seed_counts`, with
    the coverage measured at each where there is a measurement."""
    import warnings

    few = sorted({int(n) for n in seed_counts if 0 < n < FEW_SEEDS})
    if not few:
        return
    measured = [f"{MEASURED_COVERAGE[kind][n]:.2f} at {n}" for n in few if n in MEASURED_COVERAGE[kind]]
    warnings.warn(f"{what}: intervals from {', '.join(map(str, few))} seeds: below {FEW_SEEDS} seeds they are wide "
                  + (f"and 95% intervals held the truth less often on synthetic sweeps ({'; '.join(measured)}"
                     f"{_COVERAGE_OF.get(kind, '')})"
                     if measured else "and their coverage is poorly known"),
                  FewSeedsWarning, stacklevel=3)
_ELEMENTS = 1 << 22  # points per batched refit, to bound memory


@dataclass(frozen=True)
class SeedReplicates:
    """Refits on resampled seeds: per fit id, (a, b, c) arrays of n_bootstrap replicates (NaN where a refit
    failed); per group id, the clusters drawn from, the distinct resamples drawn, and the draws themselves:
    per block (one, keyed None: whole seeds, whatever the subsets), its seeds and their (B, seeds) counts."""

    params: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]
    clusters: dict[int, int]
    distinct: dict[int, int]
    draws: dict[int, dict[object, tuple[np.ndarray, np.ndarray]]]


def seed_replicates(points: pd.DataFrame, fits: list[int], n_bootstrap: int, seed: int) -> SeedReplicates:
    """Refit `fits` (fit ids of `points`) on n_bootstrap seed resamples; `points` has _fit, _group, data_size,
    seed, accuracy and optionally subset (and _w, each point's weight in its fit), sorted by (_fit, data_size)."""
    rng = np.random.default_rng(seed)
    weights: dict[int, np.ndarray] = {}  # fit -> (B, its points)
    clusters: dict[int, int] = {}
    distinct: dict[int, int] = {}
    all_draws: dict[int, dict[object, tuple[np.ndarray, np.ndarray]]] = {}
    wanted = points[points["_fit"].isin(fits)]
    for g, group in wanted.groupby("_group", sort=True):
        seeds = np.sort(group["seed"].unique())  # whole seeds: one draw for every size and treatment of the group
        counts = rng.multinomial(seeds.size, np.full(seeds.size, 1.0 / seeds.size), size=n_bootstrap)  # (B, seeds)
        all_draws[int(g)] = {None: (seeds, counts)}
        column = pd.Series(np.searchsorted(seeds, group["seed"].to_numpy()), index=group.index)
        clusters[int(g)] = seeds.size
        distinct[int(g)] = int(np.unique(counts, axis=0).shape[0])
        for f, fit_points in group.groupby("_fit", sort=True):
            weights[int(f)] = counts[:, column[fit_points.index].to_numpy()].astype(float)

    by_fit = {int(f): p for f, p in wanted.groupby("_fit", sort=True)}
    order = sorted(by_fit)
    n_max = max((len(by_fit[f]) for f in order), default=0)
    per_chunk = max(1, _ELEMENTS // (n_bootstrap * max(n_max, 1)))
    params: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for start in range(0, len(order), per_chunk):
        chunk = order[start:start + per_chunk]
        shape = (len(chunk) * n_bootstrap, n_max)
        sizes, errors, w = np.ones(shape), np.zeros(shape), np.zeros(shape)
        for i, f in enumerate(chunk):
            fit_points, rows = by_fit[f], slice(i * n_bootstrap, (i + 1) * n_bootstrap)
            n = len(fit_points)
            sizes[rows, :n] = fit_points["data_size"].to_numpy(dtype=float)
            errors[rows, :n] = 1.0 - fit_points["accuracy"].to_numpy(dtype=float)
            w[rows, :n] = weights[f] * (fit_points["_w"].to_numpy(dtype=float) if "_w" in fit_points else 1.0)
        a, b, c, _, _ = fit_batch(sizes, errors, w)
        for i, f in enumerate(chunk):
            rows = slice(i * n_bootstrap, (i + 1) * n_bootstrap)
            params[f] = (a[rows], b[rows], c[rows])
    return SeedReplicates(params, clusters, distinct, all_draws)


def expanded_tail(clusters: int, level: float) -> float:
    """The one-sided tail of the expanded percentile interval at `level` for `clusters` clusters (NaN below 2)."""
    if clusters < 2:
        return float("nan")
    t = stats.t.ppf(0.5 + level / 2.0, clusters - 1)
    return float(stats.norm.sf(np.sqrt(clusters / (clusters - 1.0)) * t))


def expanded_p(share: float, clusters: int) -> float:
    """The two-sided p that matches the expanded percentile interval: the largest 1 − level at which that
    interval, `expanded_tail(clusters, level)`, still holds 0, given the `share` of replicates on the far side of
    0 (the smaller tail). A plain 2 × share would call r nonzero where the printed interval holds 0."""
    if clusters < 2 or not np.isfinite(share):
        return float("nan")
    t = stats.norm.isf(share) / np.sqrt(clusters / (clusters - 1.0))
    return float(min(1.0, 2.0 * stats.t.sf(t, clusters - 1)))


def percentile_interval(values: np.ndarray, tail: float) -> tuple[np.ndarray, np.ndarray]:
    """Per column of (B, m) replicates, the order statistics at `tail` and 1 − `tail` of the non-NaN values
    (NaN where none, or where `tail` is NaN).

    Order statistics (numpy's 'lower' and 'higher' methods), not interpolation: a replicate may be +inf
    where it is unbounded, and interpolating towards +inf gives NaN or +inf from one replicate.
    """
    ordered = np.sort(values, axis=0)  # NaN (a failed refit) sorts last
    n = np.sum(~np.isnan(values), axis=0)
    if np.isnan(tail):
        return np.full(values.shape[1], np.nan), np.full(values.shape[1], np.nan)
    lo_idx = np.floor(tail * np.maximum(n - 1, 0)).astype(int)
    hi_idx = np.ceil((1.0 - tail) * np.maximum(n - 1, 0)).astype(int)
    low = np.take_along_axis(ordered, lo_idx[None, :], axis=0)[0]
    high = np.take_along_axis(ordered, hi_idx[None, :], axis=0)[0]
    return np.where(n > 0, low, np.nan), np.where(n > 0, high, np.nan)
