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
- the family-wise error over everything one table claims (`family_p`): the signs of each seed are flipped
  together for every claim of the table (they share the seeds), and each claim's p is the share of flips whose
  largest statistic, over the table's claims not already judged larger, reaches the claim's own (Westfall and
  Young's step-down max-T; the statistic is |mean| / root mean square of the seed values, which a flip leaves
  unchanged in scale).
  With n seeds the smallest such p is 2/2^n (times the number of seed sets a table mixes), so where that is not
  below 1 − level `differs` is None, "too few seeds to test", never a silent "no"; `ci_excludes_0` says what
  the interval says.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from augworth.analysis.fit import fit_batch, inverse_power_law, power_law
from augworth.analysis.intervals import expanded_tail, percentile_interval, seed_replicates

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


def difference(paired: PairedV, first: int, second: int, level: float, seed: int) -> dict[str, object]:
    """v of pair `first` minus v of pair `second` at each size: the point difference, its interval, the mean
    per-seed log ratio, the sign-flip p of each size alone, and (`_d`, `_seeds`) each row's per-seed log ratios
    and their seeds, for the table's family-wise p (`family_p`)."""
    with np.errstate(invalid="ignore"):  # both unbounded: no difference to speak of (NaN, left out)
        low, high = interval(paired, paired.replicates[first] - paired.replicates[second], level)
        v_diff = paired.point[first] - paired.point[second]
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.minimum(np.log(np.maximum(paired.sizes + paired.per_seed, 1.0)), _LOG_CAP)
    d = logs[:, first, :] - logs[:, second, :]  # (n seeds, sizes)
    p = sign_flip(d, seed)
    with np.errstate(invalid="ignore"):
        excludes_0 = (low > 0) | (high < 0)
    return {"v_diff": v_diff, "v_diff_ci_low": low, "v_diff_ci_high": high, "ci_excludes_0": excludes_0,
            "mean_log_ratio": np.nanmean(d, axis=0) if d.shape[0] else np.full(p.size, np.nan), "p_sign_flip": p,
            "_d": list(d.T), "_seeds": [tuple(paired.seeds.tolist())] * p.size}


def family_p(frame: pd.DataFrame, by: list[str], level: float, seed: int) -> pd.DataFrame:
    """The family-wise p of each row's claim (`p_family`), over the rows that share `by` (one printed table),
    `family_claims` (how many), and `differs` (p_family below 1 − level; None where the seeds cannot reach it);
    rows carry `_d` (their per-seed values) and `_seeds`, which are dropped. A family whose rows rest on several
    seed sets gets each set's max-T p times the number of sets (Bonferroni across them)."""
    frame = frame.reset_index(drop=True)
    p_family = np.full(len(frame), np.nan)
    claims = np.zeros(len(frame), dtype=int)
    testable = np.zeros(len(frame), dtype=bool)
    keys = [c for c in by if c in frame.columns]
    families = frame.groupby(keys, dropna=False, sort=False).groups.values() if keys else [frame.index]
    for rows in families:
        rows = [i for i in rows if isinstance(frame.at[i, "_d"], np.ndarray)]  # rows that make no claim: none
        by_seeds: dict[tuple, list[int]] = {}
        for i in rows:
            by_seeds.setdefault(frame.at[i, "_seeds"], []).append(i)
        for members in by_seeds.values():
            d = np.stack([frame.at[i, "_d"] for i in members], axis=1)  # (n seeds, claims)
            p_family[members] = np.minimum(1.0, max_t(d, seed) * len(by_seeds))
            smallest = (2.0 / 2 ** d.shape[0] if d.shape[0] <= EXACT_SEEDS else 1.0 / 10_000) * len(by_seeds)
            testable[members] = d.shape[0] > 0 and smallest < 1.0 - level
        claims[list(rows)] = len(rows)
    return frame.drop(columns=["_d", "_seeds"]).assign(
        p_family=p_family, family_claims=claims,
        differs=pd.array([bool(p < 1.0 - level) if t else None for p, t in zip(p_family, testable, strict=True)],
                         dtype="boolean"))


def max_t(d: np.ndarray, seed: int) -> np.ndarray:
    """Per column of (n, m) per-seed values of m claims that share the seeds, the step-down max-T p over sign
    flips of the seeds (every pattern up to EXACT_SEEDS seeds, else 10,000 with the observed one among them)."""
    n = d.shape[0]
    if n == 0:
        return np.full(d.shape[1], np.nan)
    signs = _patterns(n, seed)
    finite = np.where(np.isnan(d), 0.0, d)
    scale = np.sqrt(np.mean(finite * finite, axis=0))  # a flip leaves it as it is
    with np.errstate(divide="ignore", invalid="ignore"):
        observed = np.where(scale > 0, np.abs(finite.mean(axis=0)) / scale, 0.0)
        null = np.where(scale > 0, np.abs(signs @ finite / n) / scale, 0.0)  # (patterns, m)
    # step-down: the claim with the largest statistic is judged against the maximum over all claims, the next
    # against the maximum over all but it, and so on; p never falls down the order
    order = np.argsort(-observed, kind="stable")
    remaining_max = np.maximum.accumulate(null[:, order][:, ::-1], axis=1)[:, ::-1]  # (patterns, m)
    stepped = np.maximum.accumulate(np.mean(remaining_max >= observed[order][None, :] * (1 - 1e-12), axis=0))
    p = np.empty(d.shape[1])
    p[order] = stepped
    return p


def _patterns(n: int, seed: int) -> np.ndarray:
    if n <= EXACT_SEEDS:
        return np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    # random patterns, the observed one (all +1) among them: a p-value is never 0
    return np.vstack([np.ones(n), np.random.default_rng(seed).choice((1.0, -1.0), size=(9_999, n))])


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
    signs = _patterns(n, seed)
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
