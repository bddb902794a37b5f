"""Is treatment A worth more real data than treatment B? Their paired difference of v at each size.

Both are measured against the same reference on the same seeds, so the comparison is paired twice over:
- the interval of v_A − v_B comes from the seed resampling of `intervals.py`, one draw shared by A, B and the
  reference, so what a seed does to all three cancels;
- the test flips signs over seeds: each seed's own three curves give d_s(x) = log(x + v_A) − log(x + v_B)
  (the log of the ratio of the two exchange ratios, so an unbounded v counts as large, not as NaN); under
  "no difference" each d_s is as likely negative as positive, and the p-value is the share of the 2^n sign
  patterns (10,000 random ones above 12 seeds) whose mean is at least as far from 0 as the observed one.
  Holm's step-down correction across the sizes of one comparison bounds the chance of any false "differs".
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from analysis.exchange import reference_mask
from analysis.fit import fit_batch, inverse_power_law, power_law
from analysis.intervals import expanded_tail, percentile_interval, seed_replicates
from results import GROUP_COLUMNS, TREATMENT_COLUMNS
from search_spaces.cells import LABEL_COLUMNS, treatment_label

EXACT_SEEDS = 12  # up to this many seeds every sign pattern is tried; above, random ones
_LOG_CAP = np.log(1e12)  # x + v beyond this (or unbounded) counts as this on the log scale
_REFERENCE = "\x00reference"  # the reference's rows, whatever a treatment label might read


def treatment_labels(results: pd.DataFrame, shown: pd.Series | None = None) -> pd.Series:
    """Each row's treatment as the tables print it: 'crop(2)', with the treatment's label columns that vary among
    the `shown` rows (default: all) in brackets: 'crop(2) [fixed 4]'. Group columns (model, width, ...) are
    left out: a comparison is made within each group, and its rows name the group."""
    columns = [c for c in TREATMENT_COLUMNS if c in results.columns]
    among = results if shown is None else results[shown]
    varying = [c for c in LABEL_COLUMNS if c in columns and among[c].astype(str).nunique() > 1]
    return results[[c for c in results.columns if c in set(columns) | set(varying)]].apply(
        lambda row: treatment_label(row.to_dict(), varying), axis=1)


def compare(results: pd.DataFrame, first: str, second: str, *, reference: str = "none", n_bootstrap: int = 1000,
            seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """One row per (group, eval set, size) where both treatments and the reference have fits: v of each, the
    difference v_first − v_second with its interval at `level`, the sign-flip p-value over seeds and its Holm
    correction across the comparison's sizes, and `differs` (Holm p below 1 − level).

    `first` and `second` are treatments as `augworth analyze` tables print them, less any group columns
    ('crop(2)', 'crop(2) [fixed 4]'); `reference` is chosen as `exchange_rates` chooses it (this augmentation,
    trained plainly), and naming it as `first` or `second` compares against the reference itself (v = 0)."""
    if n_bootstrap < 1:
        raise ValueError(f"compare: n_bootstrap must be at least 1, got {n_bootstrap}")
    rows = results
    if "final" in rows.columns:
        rows = rows[rows["final"].astype("boolean").fillna(False).to_numpy(dtype=bool)]
    rows = rows[rows["accuracy"].notna()]
    is_reference = pd.Series(reference_mask(rows, reference), index=rows.index)
    labels = treatment_labels(rows, ~is_reference).where(~is_reference, _REFERENCE)
    rows = rows.assign(_label=labels)
    known = sorted(set(labels) - {_REFERENCE})
    roles = []
    for name in (first, second):
        if name not in known and name != reference:
            raise ValueError(f"compare: no treatment {name!r} in the results (have: {', '.join(known)}; "
                             f"reference: {reference})")
        roles.append(name if name in known else _REFERENCE)
    if not is_reference.any():
        raise ValueError(f"compare: no reference {reference!r} (trained plainly) in the results")
    rows = rows[rows["_label"].isin([*roles, _REFERENCE])]
    group_cols = [c for c in GROUP_COLUMNS if c in rows.columns]
    out = []
    for _, group in rows.groupby([*group_cols, "eval_set"], dropna=False, sort=True):
        if set(group["_label"]) == {*roles, _REFERENCE}:
            frame = _compare_group(group, [*roles, _REFERENCE], group_cols, n_bootstrap, seed, level)
            out.append(frame.assign(first=first, second=second, reference=reference))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def _compare_group(group: pd.DataFrame, labels: list[str], group_cols: list[str], n_bootstrap: int, seed: int,
                   level: float) -> pd.DataFrame:
    # one fit per role (first, second, reference), also where a role's treatment is the reference
    points = pd.concat([group[group["_label"] == name].assign(_fit=i) for i, name in enumerate(labels)],
                       ignore_index=True).assign(_group=0)
    points = points.sort_values(["_fit", "data_size"], kind="stable", ignore_index=True)
    sizes = np.array(sorted(set(points.loc[points["_fit"] == 0, "data_size"]) & set(points.loc[points["_fit"] == 1,
                                                                                              "data_size"])), float)
    seeds = np.sort(points["seed"].unique())
    # the point fits, and each seed's own fits (weight 1 on that seed's points): three curves per row
    weight_rows = [np.ones(len(points))] + [(points["seed"] == s).to_numpy(float) for s in seeds]
    fit_of = points["_fit"].to_numpy()
    params = [_fit_three(points, fit_of, w) for w in weight_rows]
    v = [_same_as_reference(_v_pair(p, sizes), labels) for p in params]  # each (2, sizes): v of first and second
    v_point, v_seeds = v[0], np.stack(v[1:])  # (2, k), (n, 2, k)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.minimum(np.log(np.maximum(sizes + v_seeds, 1.0)), _LOG_CAP)
    d = logs[:, 0, :] - logs[:, 1, :]  # (n seeds, sizes)
    p = _sign_flip(d, seed)
    replicates = seed_replicates(points, [0, 1, 2], n_bootstrap, seed)
    tail = expanded_tail(replicates.clusters[0], level)
    v_boot = _same_as_reference(_v_pair(tuple(np.stack([replicates.params[f][i] for f in range(3)])
                                              for i in range(3)), sizes, boot=True), labels)  # (2, B, k)
    with np.errstate(invalid="ignore"):  # both unbounded in a replicate: no difference to speak of (NaN, left out)
        diff_low, diff_high = percentile_interval(v_boot[0] - v_boot[1], tail)
    first_row = group.iloc[0]
    frame = pd.DataFrame({
        **{c: first_row[c] for c in group_cols}, "eval_set": first_row["eval_set"], "first": labels[0],
        "second": labels[1], "reference": labels[2], "data_size": sizes.astype(int), "n_seeds": len(seeds),
        "v_first": v_point[0], "v_second": v_point[1], "v_diff": _difference(v_point[0], v_point[1]),
        "v_diff_ci_low": diff_low, "v_diff_ci_high": diff_high,
        "mean_log_ratio": np.nanmean(d, axis=0), "p_sign_flip": p, "p_holm": holm(p),
    })
    frame["differs"] = frame["p_holm"] < 1.0 - level
    return frame


def _same_as_reference(v: np.ndarray, labels: list[str]) -> np.ndarray:
    """The reference compared with itself is worth exactly 0 extra samples (not f⁻¹(f(x)) − x in floats)."""
    for i in (0, 1):
        if labels[i] == labels[2]:
            v[i] = 0.0
    return v


def _difference(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return first - second  # NaN where both are unbounded


def _fit_three(points: pd.DataFrame, fit_of: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, ...]:
    """(a, b, c), each of shape (3,): the first, second and reference curves on the weighted points."""
    n = max(int(np.sum(fit_of == f)) for f in range(3))
    x, e, w = np.ones((3, n)), np.zeros((3, n)), np.zeros((3, n))
    for f in range(3):
        mask = fit_of == f
        k = int(mask.sum())
        x[f, :k] = points.loc[mask, "data_size"].to_numpy(float)
        e[f, :k] = 1.0 - points.loc[mask, "accuracy"].to_numpy(float)
        w[f, :k] = weights[mask]
    a, b, c, _, _ = fit_batch(x, e, w)
    return a, b, c


def _v_pair(params: tuple[np.ndarray, ...], sizes: np.ndarray, boot: bool = False) -> np.ndarray:
    """v of the first and second curve against the third at `sizes`: (2, k), or (2, B, k) for replicates
    (params of shape (3, B))."""
    a, b, c = (np.asarray(p) for p in params)
    if boot:
        a, b, c = (p[:, :, None] for p in (a, b, c))  # (3, B, 1)
    else:
        a, b, c = (p[:, None] for p in (a, b, c))  # (3, 1)
    e = power_law(sizes, a[:2], b[:2], c[:2])
    return inverse_power_law(e, a[2:], b[2:], c[2:]) - sizes


def _sign_flip(d: np.ndarray, seed: int) -> np.ndarray:
    """Per column of (n, k) per-seed differences, the two-sided sign-flip p-value of their mean (NaN rows out)."""
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
