"""Paired differences of exchange rates: the machinery behind `compare` and the paper's three questions.

Several curves trained on the same seeds (treatments of one group, or one treatment seen on two eval sets)
are fitted together; each v is a pair (treated curve, its reference curve). Two v's are compared three ways,
all paired over seeds:
- their difference at each size, with the interval of `intervals.py` from one draw of whole seeds shared by
  every curve (what a seed does to all of them cancels);
- a sign-flip test over seeds: each seed's own curves give d_s(x) = log(x + v_1) − log(x + v_2) (the log of
  the ratio of the two exchange ratios, so an unbounded v counts as large, not as NaN); under "no difference"
  each d_s is as likely negative as positive, and p is the share of the 2^n sign patterns (10,000 random ones
  above 12 seeds, the observed one among them) whose mean is at least as far from 0 as the observed one;
- Holm's step-down correction across the sizes of one comparison. With n seeds and k sizes the smallest
  Holm p is k·2/2^n (6 sizes: 8 seeds before any p can fall below 0.05), so where that is not below 1 − level
  `differs` is None, "too few seeds to test", never a silent "no"; `ci_excludes_0` says what the interval says.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.fit import fit_batch, inverse_power_law, power_law
from analysis.intervals import expanded_tail, percentile_interval, seed_replicates

EXACT_SEEDS = 12  # up to this many seeds every sign pattern is tried; above, random ones
_LOG_CAP = np.log(1e12)  # x + v beyond this (or unbounded) counts as this on the log scale


@dataclass(frozen=True)
class PairedV:
    """v of each (treated, reference) pair of curves at `sizes`: the point fits, each seed's own fits, and the
    seed-resampled refits (one draw for all curves), with the seeds behind them."""

    sizes: np.ndarray  # (k,)
    seeds: np.ndarray  # (n,)
    point: np.ndarray  # (P, k)
    per_seed: np.ndarray  # (n, P, k)
    replicates: np.ndarray  # (P, B, k)
    clusters: int  # seeds resampled
    draws: dict[object, tuple[np.ndarray, np.ndarray]]  # the seed draws (`SeedReplicates.draws` of the one group)


def final_rows(results: pd.DataFrame) -> pd.DataFrame:
    """The rows that are fit points: the final evaluation of each cell (where a `final` column exists), with an
    accuracy; indexed 0..n−1."""
    rows = results
    if "final" in rows.columns:
        rows = rows[rows["final"].astype("boolean").fillna(False).to_numpy(dtype=bool)]
    return rows[rows["accuracy"].notna()].reset_index(drop=True)


def paired_v(points: pd.DataFrame, n_fits: int, pairs: list[tuple[int, int]], sizes: np.ndarray,
             n_bootstrap: int, seed: int) -> PairedV:
    """`points`: rows with _fit in 0..n_fits−1, data_size, seed, accuracy (final rows only). A pair whose two
    curves are the same fit is worth exactly 0 (not f⁻¹(f(x)) − x in floats)."""
    points = points.assign(_group=0).sort_values(["_fit", "data_size"], kind="stable", ignore_index=True)
    seeds = np.sort(points["seed"].unique())
    # the seeds every curve has: what the interval and the test rest on (a seed some curve lacks pairs nothing)
    common = set.intersection(*(set(points.loc[points["_fit"] == f, "seed"]) for f in range(n_fits)))
    fit_of = points["_fit"].to_numpy()
    weight_rows = [np.ones(len(points))] + [(points["seed"] == s).to_numpy(float) for s in seeds]
    fitted = [_fit_all(points, fit_of, n_fits, w) for w in weight_rows]  # each (a, b, c) of shape (n_fits,)
    v = np.stack([_v_of_pairs(tuple(p[:, None] for p in params), pairs, sizes) for params in fitted])
    replicates = seed_replicates(points, list(range(n_fits)), n_bootstrap, seed)
    boot = tuple(np.stack([replicates.params[f][i] for f in range(n_fits)])[:, :, None] for i in range(3))
    shared = np.isin(seeds, sorted(common))
    return PairedV(sizes=sizes, seeds=seeds[shared], point=v[0], per_seed=v[1:][shared],
                   replicates=_v_of_pairs(boot, pairs, sizes), clusters=min(replicates.clusters[0], len(common)),
                   draws=replicates.draws[0])


def interval(paired: PairedV, values: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """The expanded percentile interval of (B, k) replicates of some function of the v's."""
    return percentile_interval(values, expanded_tail(paired.clusters, level))


def difference(paired: PairedV, first: int, second: int, level: float, seed: int) -> dict[str, np.ndarray]:
    """v of pair `first` minus v of pair `second` at each size: the point difference, its interval, the mean
    per-seed log ratio, the sign-flip p, its Holm correction and `differs` (Holm p below 1 − level)."""
    with np.errstate(invalid="ignore"):  # both unbounded: no difference to speak of (NaN, left out)
        low, high = interval(paired, paired.replicates[first] - paired.replicates[second], level)
        v_diff = paired.point[first] - paired.point[second]
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.minimum(np.log(np.maximum(paired.sizes + paired.per_seed, 1.0)), _LOG_CAP)
    d = logs[:, first, :] - logs[:, second, :]  # (n seeds, sizes)
    p = sign_flip(d, seed)
    adjusted = holm(p)
    testable = smallest_holm_p(d.shape[0], p.size) < 1.0 - level
    with np.errstate(invalid="ignore"):
        excludes_0 = (low > 0) | (high < 0)
    return {"v_diff": v_diff, "v_diff_ci_low": low, "v_diff_ci_high": high, "ci_excludes_0": excludes_0,
            "mean_log_ratio": np.nanmean(d, axis=0) if d.shape[0] else np.full(p.size, np.nan), "p_sign_flip": p,
            "p_holm": adjusted,
            "differs": pd.array([bool(a < 1.0 - level) if testable else None for a in adjusted], dtype="boolean")}


def smallest_holm_p(n_seeds: int, n_sizes: int) -> float:
    """The smallest Holm-adjusted p a sign-flip test over n seeds can reach across n sizes."""
    if n_seeds < 1:
        return 1.0
    smallest = 2.0 / 2**n_seeds if n_seeds <= EXACT_SEEDS else 1.0 / 10_000
    return min(1.0, n_sizes * smallest)


def _fit_all(points: pd.DataFrame, fit_of: np.ndarray, n_fits: int, weights: np.ndarray) -> tuple[np.ndarray, ...]:
    """(a, b, c), each of shape (n_fits,): every curve on the weighted points."""
    n = max(int(np.sum(fit_of == f)) for f in range(n_fits))
    x, e, w = np.ones((n_fits, n)), np.zeros((n_fits, n)), np.zeros((n_fits, n))
    for f in range(n_fits):
        mask = fit_of == f
        k = int(mask.sum())
        x[f, :k] = points.loc[mask, "data_size"].to_numpy(float)
        e[f, :k] = 1.0 - points.loc[mask, "accuracy"].to_numpy(float)
        w[f, :k] = weights[mask]
    a, b, c, _, _ = fit_batch(x, e, w)
    return a, b, c


def _v_of_pairs(params: tuple[np.ndarray, ...], pairs: list[tuple[int, int]], sizes: np.ndarray) -> np.ndarray:
    """v of each pair at `sizes` from parameters of shape (n_fits, ..., 1): (P, ..., k)."""
    a, b, c = params
    out = []
    for treated, reference in pairs:
        e = power_law(sizes, a[treated], b[treated], c[treated])
        v = inverse_power_law(e, a[reference], b[reference], c[reference]) - sizes
        out.append(np.zeros_like(v) if treated == reference else v)
    return np.stack(out)


def sign_flip(d: np.ndarray, seed: int) -> np.ndarray:
    """Per column of (n, k) per-seed differences, the two-sided sign-flip p-value of their mean (NaN as 0)."""
    n = d.shape[0]
    if n <= EXACT_SEEDS:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    else:
        # random patterns, the observed one (all +1) among them: a p-value is never 0
        signs = np.vstack([np.ones(n), np.random.default_rng(seed).choice((1.0, -1.0), size=(9_999, n))])
    finite = np.where(np.isnan(d), 0.0, d)
    observed = np.abs(finite.mean(axis=0))
    flipped = np.abs(signs @ finite / n)  # (patterns, k)
    return np.mean(flipped >= observed[None, :] * (1 - 1e-12), axis=0)


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (scipy has Benjamini-Hochberg's, not Holm's)."""
    p = np.asarray(p, dtype=float)
    order = np.argsort(p)
    m = p.size
    adjusted = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out
