"""The exchange rate of one measured point against a reference curve: a searched point, or its confirmation on
fresh seeds, at one data size x (`best`).

v is where the reference's power law reaches the point's mean accuracy over its seeds, minus x, and what the
row may claim follows the rules `exchange_rates` gives a fitted curve (verdicts.py): "unbounded" only where every
curve family that fits the reference shows it saturating below the point's t interval, censored at the measured
bound where the families disagree on an extrapolated verdict, a flat reference has no exchange rate. The
returned dict has `exchange_rates`' column names, so `formatting.rate_text` reads it as any other row.

The interval redraws the reference's seeds whole (one draw for all its sizes). The point's seeds are drawn with
them where the point was trained on the same seeds (`paired`: the search's trials share their seeds with the
grid), and on their own where they are fresh (a confirmation shares nothing with the curve's seeds).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from augworth.analysis.families import reference_families
from augworth.analysis.fit import fit_batch, inverse_power_law, profile_asymptote
from augworth.analysis.intervals import expanded_tail, percentile_interval, seed_replicates
from augworth.analysis.verdicts import (
    EXTRAPOLATION_LIMIT,
    accuracy_lower_bound,
    family_verdicts,
    fit_diagnostics,
    flat_references,
    holdout_largest,
    measured_bounds,
)

_RTOL = 1e-9


def point_exchange(ref: pd.DataFrame, point: pd.Series, x: float, *, paired: bool, level: float = 0.95,
                   n_bootstrap: int = 1000, seed: int = 0, limit: float = EXTRAPOLATION_LIMIT) -> dict[str, Any]:
    """`ref`: the reference's final rows (data_size, seed, accuracy); `point`: accuracy by seed at size `x`.
    Paired: only the seeds both have are used, resampled together."""
    point = point.groupby(level=0).mean()
    if paired:
        common = sorted(set(ref["seed"]) & set(point.index))
        ref, point = ref[ref["seed"].isin(common)], point.reindex(common)
    mean, std, n = float(point.mean()), float(point.std(ddof=1)) if point.size > 1 else np.nan, point.size
    out: dict[str, Any] = {"data_size": x, "accuracy_mean": mean, "n_seeds": n, "fit_ok": False}
    if ref["data_size"].nunique() < 3 or ref["seed"].nunique() < 2 or n < 2:
        return out | {"fit_reason": "no reference curve (3 sizes and 2 seeds" + (" shared" if paired else "") + ")"}
    points = ref[["data_size", "seed", "accuracy"]].assign(_fit=0, _group=0).sort_values(
        ["data_size", "seed"], ignore_index=True)
    sizes = points["data_size"].to_numpy(float)[None, :]
    errors, weights = 1.0 - points["accuracy"].to_numpy(float)[None, :], np.ones((1, len(points)))
    a, b, c, sse, reason = fit_batch(sizes, errors, weights)
    lo, hi = float(sizes.min()), float(sizes.max())
    bound_low, bound_high = measured_bounds(points, np.array([1]), np.array([0, 0]), np.array([x]), np.array([mean]),
                                            treated=[point])
    out |= {"ref_size_max": hi, "v_bound_low": float(bound_low[0]), "v_bound_high": float(bound_high[0])}
    if reason[0] is not None:
        return out | {"fit_reason": f"reference fit failed: {reason[0]}"}
    flat = flat_references(points, [0])
    if flat:
        return out | {"fit_reason": flat[0]}
    b_profile = profile_asymptote(sizes, errors, weights, sse, level)
    plain_sse = np.sum((errors - (a[:, None] * sizes ** -c[:, None] + b[:, None])) ** 2, axis=1)
    at_bound, lack_of_fit, monotone = fit_diagnostics(points, 1, a, b, c, plain_sse)
    families = reference_families(sizes, errors, weights, [0], a, b, c, lack_of_fit, b_profile[0])
    e = np.array([1.0 - mean])
    x_equiv = inverse_power_law(e, a, b, c)
    below_asymptote = e <= b

    v_low, v_high, b_low, b_high, clusters = _point_interval(points, point, x, paired=paired, level=level,
                                                             n_bootstrap=n_bootstrap, seed=seed)
    extrapolated = bool((x_equiv[0] < lo * (1 - _RTOL)) or (x_equiv[0] > hi * (1 + _RTOL)))
    verdict = family_verdicts(
        ok=np.array([True]), own=np.array([False]), below_asymptote=below_asymptote,
        extrapolated=np.array([extrapolated]), x=np.array([x]), x_equiv=x_equiv, e_aug=e,
        lower_acc=accuracy_lower_bound(np.array([mean]), np.array([std]), np.array([n]), level),
        asymptote_high=np.array([1.0 - b_low]), ref={name: {k: v[[0]] for k, v in per.items()}
                                                     for name, per in families.items()},
        size_lo=np.array([lo]), size_hi=np.array([hi]), limit=limit)
    v = float(x_equiv[0] - x)
    if verdict["unbounded"][0] and np.isfinite(v):  # another family's verdict than the power law's
        v, v_low, v_high = np.inf, np.nan, np.nan
    holdout_error, holdout_ratio = holdout_largest(sizes, errors, weights, [0])
    out |= {"fit_ok": True, "fit_reason": None, "accuracy_std": std, "effective_extra_samples": v,
            "exchange_ratio": (x + v) / x, "v_ci_low": v_low, "v_ci_high": v_high, "ci_seeds": clusters,
            "extrapolated": extrapolated or bool(verdict["unbounded"][0]),
            "extrapolation_factor": float(x_equiv[0] / hi),
            "beyond_extrapolation_limit": bool(x_equiv[0] > limit * hi * (1 + _RTOL)),
            "ref_asymptote_low": 1.0 - b_high, "ref_asymptote_high": 1.0 - b_low,
            "ref_a": float(a[0]), "ref_b": float(b[0]), "ref_c": float(c[0]), "ref_fit_at_bound": at_bound[0],
            "ref_lack_of_fit_p": float(lack_of_fit[0]), "ref_monotone": bool(monotone[0]),
            "ref_b_profile_low": float(b_profile[0][0]), "ref_b_profile_high": float(b_profile[1][0]),
            "ref_holdout_error": float(holdout_error[0]), "ref_holdout_size_ratio": float(holdout_ratio[0])}
    for name, values in verdict.items():
        out[name] = values[0].item() if isinstance(values[0], np.generic) else values[0]
    for name in ("pure_power", "exponential"):
        out[f"ref_lack_of_fit_p_{name}"] = float(families[name]["lack_of_fit_p"][0])
    return out


def _point_interval(points: pd.DataFrame, point: pd.Series, x: float, *, paired: bool, level: float,
                    n_bootstrap: int, seed: int) -> tuple[float, float, float, float, int]:
    """v's interval and the reference's asymptote's (as b), and the clusters that set the expansion: the
    reference's seeds drawn whole; the point's with them (paired) or on their own (fresh seeds)."""
    n = point.size
    replicates = seed_replicates(points, [0], n_bootstrap, seed)
    ref_seeds, counts = replicates.draws[0][None]
    if paired:
        acc_b = counts @ point.reindex(ref_seeds).to_numpy(float) / counts.sum(axis=1)
        clusters = ref_seeds.size
    else:
        own = np.random.default_rng([seed, 1]).multinomial(n, np.full(n, 1.0 / n), size=n_bootstrap)
        acc_b = own @ point.to_numpy(float) / n
        clusters = min(ref_seeds.size, n)  # the scarcer of the two samples sets the expansion
    ra, rb, rc = replicates.params[0]
    tail = expanded_tail(clusters, level)
    v_low, v_high = (float(end[0]) for end in percentile_interval((inverse_power_law(1.0 - acc_b, ra, rb, rc)
                                                                     - x)[:, None], tail))
    b_low, b_high = (float(end[0]) for end in percentile_interval(rb[:, None], tail))
    return v_low, v_high, b_low, b_high, int(clusters)
