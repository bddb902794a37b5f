"""Exchange rates: how many extra real samples an augmentation is worth (Eq. 1 of Geiping et al.).

For each group (every cell field that is neither treatment, data size nor seed) and eval set, one power law
is fitted per treatment on all its (size, seed) points, and the reference treatment's curve is inverted:

    v(x) = f_ref⁻¹(f_aug(x)) − x          effective extra samples at data size x
    exchange_ratio = (x + v) / x          real samples the augmented x samples are worth, per sample

Run columns (host, seconds, step, cell_key, …) never enter a group: only the store's GROUP_COLUMNS and
TREATMENT_COLUMNS that the frame has are used, with missing values kept as their own group value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from augworth.analysis.families import reference_families
from augworth.analysis.fit import fit_batch, inverse_power_law, power_law, profile_asymptote
from augworth.analysis.intervals import (  # noqa: F401  (FewSeedsWarning: callers catch it from here)
    FewSeedsWarning,
    expanded_tail,
    percentile_interval,
    seed_replicates,
    warn_few_seeds,
)
from augworth.analysis.treatments import reference_mask
from augworth.analysis.verdicts import (
    EXTRAPOLATION_LIMIT,
    accuracy_lower_bound,
    family_verdicts,
    fit_diagnostics,
    flat_references,
    holdout_largest,
    measured_bounds,
)
from augworth.results import GROUP_COLUMNS, TREATMENT_COLUMNS, Store, read_results

REQUIRED_COLUMNS: tuple[str, ...] = ("augmentation", "data_size", "seed", "eval_set", "accuracy")
CI_LEVEL = 0.95
_RTOL = 1e-9  # x + v at the edge of the measured range counts as inside
WEIGHTINGS = ("equal", "inverse_variance")


def load_results(store_root: str, sweep: str) -> pd.DataFrame:
    """Every result row of a sweep (all eval steps; `exchange_rates` keeps the final ones)."""
    return read_results(Store(store_root), sweep)


def exchange_rates(
    results: pd.DataFrame, reference: str = "none", *, n_bootstrap: int = 0, seed: int = 0,
    extrapolation_limit: float = EXTRAPOLATION_LIMIT, weights: str = "equal",
) -> pd.DataFrame:
    """One row per (group, treatment, eval_set, data_size): measured and fitted accuracy, v, the ratio.

    `results` needs `augmentation`, `data_size`, `seed`, `eval_set`, `accuracy` (a fraction); rows whose
    `final` is false (or missing) are ignored when that column exists, and rows without an accuracy are
    skipped. The reference treatment of each group is the one whose `augmentation` equals `reference`.

    Columns: the group columns present, the treatment columns present, eval_set, data_size, n_seeds,
    accuracy_mean, accuracy_std (over seeds), accuracy_fit, effective_extra_samples (v), exchange_ratio,
    extrapolated (x + v outside the reference's measured sizes; True when v = +inf), unbounded and
    indeterminate (below), extrapolation_factor ((x + v) / the largest reference size) and
    beyond_extrapolation_limit (that factor above `extrapolation_limit`: show "> bound", not the number;
    the numbers stay), ref_size_max (the largest reference size), v_bound_low and v_bound_high (model-free
    bounds from the measurements, `verdicts.measured_bounds`), [v_ci_low, v_ci_high, ci_seeds,
    ci_resamples, ref_asymptote_low, ref_asymptote_high when n_bootstrap > 0], fit_ok, fit_reason (None
    when ok), a, b, c, rmse (this treatment's fit, NaN when it failed), fit_at_bound (the parameters at a
    bound of the model, or None) and lack_of_fit_p (`verdicts.fit_diagnostics`), ref_a, ref_b, ref_c and the
    reference's ref_fit_at_bound, ref_lack_of_fit_p and ref_monotone (its measured means never fall with
    size), is_reference.

    Where the treatment's fitted error at x is at or below the reference's fitted asymptote b (v = +inf),
    the claim "worth more than any amount of real data" is `unbounded` only if its measured mean accuracy at
    x exceeds the upper end of the reference's asymptote interval (ref_asymptote_high, from the bootstrap);
    otherwise, and always without a bootstrap, it is `indeterminate`: v_bound_low is what the data support.

    fit_ok is False, with the reason, when this treatment's fit or its group's reference fit failed (fewer
    than 3 sizes, optimisation) or the group has no single reference; v, the ratio and the CI are NaN then
    and the flags False. The reference's own rows have v = 0 and ratio 1.

    n_bootstrap > 0 adds an interval for v at CI_LEVEL (v_ci_low, v_ci_high) that treats seeds as clusters:
    whole seeds are redrawn, one draw shared by every treatment of a group and its reference (independent
    subsets too: a seed's initial weights and batch order persist across sizes), and the interval is the
    expanded percentile interval of the refits (`intervals.py`); `seed` fixes the draws. Also ci_seeds
    (the seeds resampled) and ci_resamples (distinct resamples
    drawn), accuracy_fit_ci_low/high (the fitted accuracy's interval at the row's size, for the plots'
    bands); a FewSeedsWarning below FEW_SEEDS seeds.

    Every fit also gets the profile-likelihood interval of its asymptote b (b_profile_low, b_profile_high; the
    reference's as ref_b_profile_low/high; `fit.profile_asymptote`). `weights="inverse_variance"` weighs each
    point by 1/(the variance over seeds of its treatment at its size), floored at a tenth of the fit's median
    variance so that a size whose few seeds happen to agree does not take over the fit; the bootstrap keeps
    those weights. Default "equal": every point counts once.
    """
    _check_request(results, n_bootstrap, weights)
    group_cols = [name for name in GROUP_COLUMNS if name in results.columns]
    keys = [*group_cols, *(name for name in TREATMENT_COLUMNS if name in results.columns), "eval_set"]
    points = _final_points(results, keys)
    columns = _output_columns(keys, n_bootstrap)
    if points.empty:
        return pd.DataFrame({name: results[name].iloc[:0] if name in results.columns else [] for name in columns})
    batch = fit_treatments(points, keys, group_cols, weights)
    refs = match_references(batch, reference)
    rows = invert(batch, refs, keys, extrapolation_limit)
    out = rows.out
    asymptote_high = None
    if n_bootstrap:
        ci = _bootstrap_v(batch.points, refs.ok, refs.of_fit, rows.fit, rows.x, n_bootstrap, seed)
        out["v_ci_low"], out["v_ci_high"], out["ci_seeds"], out["ci_resamples"] = ci[:4]
        out["ref_asymptote_low"], out["ref_asymptote_high"] = ci[4:6]
        out["accuracy_fit_ci_low"], out["accuracy_fit_ci_high"] = ci[6:]
        warn_few_seeds("exchange rates", out.loc[refs.ok[rows.fit], "ci_seeds"])
        asymptote_high = ci[5]
    diagnostics = fit_diagnostics(batch.points, len(batch.fits), batch.a, batch.b, batch.c, batch.plain_sse)
    families = reference_families(batch.sizes, batch.errors, batch.weights, refs.ids, batch.a, batch.b, batch.c,
                                  diagnostics[1], batch.b_profile[0])
    _add_verdicts(rows, families, asymptote_high, extrapolation_limit, bootstrapped=bool(n_bootstrap))
    _add_fit_columns(rows, batch, refs, diagnostics, families)
    return out[columns]


def _check_request(results: pd.DataFrame, n_bootstrap: int, weights: str) -> None:
    missing = [name for name in REQUIRED_COLUMNS if name not in results.columns]
    if missing:
        raise ValueError(
            f"exchange_rates: results lack required column(s) {', '.join(map(repr, missing))} "
            f"(needs {', '.join(REQUIRED_COLUMNS)})"
        )
    if n_bootstrap < 0:
        raise ValueError(f"exchange_rates: n_bootstrap must be >= 0, got {n_bootstrap}")
    if weights not in WEIGHTINGS:
        raise ValueError(f"exchange_rates: weights must be one of {', '.join(WEIGHTINGS)}, got {weights!r}")


def _output_columns(keys: list[str], n_bootstrap: int) -> list[str]:
    return [*keys, "data_size", "n_seeds", "accuracy_mean", "accuracy_std", "accuracy_fit",
            "effective_extra_samples", "exchange_ratio", "extrapolated", "unbounded", "indeterminate",
            "extrapolation_factor", "beyond_extrapolation_limit", "families_disagree", "v_censored",
            "x_plus_v_pure_power", "x_plus_v_exponential", "ref_size_max", "v_bound_low", "v_bound_high",
            *(["v_ci_low", "v_ci_high", "ci_seeds", "ci_resamples", "ref_asymptote_low", "ref_asymptote_high",
               "accuracy_fit_ci_low", "accuracy_fit_ci_high"] if n_bootstrap else []),
            "fit_ok", "fit_reason", "a", "b", "c", "rmse", "fit_at_bound", "lack_of_fit_p", "b_profile_low",
            "b_profile_high", "ref_a", "ref_b", "ref_c", "ref_fit_at_bound", "ref_lack_of_fit_p", "ref_monotone",
            "ref_b_profile_low", "ref_b_profile_high", "ref_lack_of_fit_p_pure_power",
            "ref_lack_of_fit_p_exponential", "ref_holdout_error", "ref_holdout_size_ratio", "is_reference"]


@dataclass(frozen=True)
class TreatmentFits:
    """One power law per fit (group × treatment × eval set), all fitted at once on (F, n_max) arrays padded
    with weight 0. `points`: the fit points with their fit (`_fit`), group (`_group`) and weight (`_w`);
    `fits`: one row per fit; `reason`: why a fit failed (None: it did not)."""

    points: pd.DataFrame
    fits: pd.DataFrame
    sizes: np.ndarray
    errors: np.ndarray
    weights: np.ndarray
    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    reason: list[str | None]
    b_profile: tuple[np.ndarray, np.ndarray]
    plain_sse: np.ndarray  # unweighted (the error scale), whatever the fit's weights: rmse and the diagnostics
    rmse: np.ndarray


def fit_treatments(points: pd.DataFrame, keys: list[str], group_cols: list[str], weights: str) -> TreatmentFits:
    points = points.copy()
    points["_fit"] = points.groupby(keys, dropna=False, sort=True).ngroup()
    points["_group"] = points.groupby([*group_cols, "eval_set"], dropna=False, sort=True).ngroup()
    points = points.sort_values(["_fit", "data_size"], kind="stable", ignore_index=True)
    points["_w"] = _point_weights(points, weights)
    fits = points.drop_duplicates("_fit").set_index("_fit").sort_index()
    fit_of_point = points["_fit"].to_numpy()
    slot = points.groupby("_fit").cumcount().to_numpy()
    shape = (len(fits), int(slot.max()) + 1)
    sizes, errors, point_w = np.ones(shape), np.zeros(shape), np.zeros(shape)
    sizes[fit_of_point, slot] = points["data_size"].to_numpy(dtype=float)
    errors[fit_of_point, slot] = 1.0 - points["accuracy"].to_numpy(dtype=float)
    point_w[fit_of_point, slot] = points["_w"].to_numpy(dtype=float)
    a, b, c, sse, reason = fit_batch(sizes, errors, point_w)
    b_profile = profile_asymptote(sizes, errors, point_w, sse, CI_LEVEL)
    plain_sse = np.sum(np.where(point_w > 0, (errors - power_law(sizes, a[:, None], b[:, None], c[:, None])) ** 2,
                                0.0), axis=1)
    rmse = np.sqrt(plain_sse / np.maximum((point_w > 0).sum(axis=1), 1))
    return TreatmentFits(points, fits, sizes, errors, point_w, a, b, c, list(reason), b_profile, plain_sse, rmse)


@dataclass(frozen=True)
class References:
    """Per fit: whether it is a reference, its group's reference fit (-1: none or ambiguous), and why its v is
    unknown (None: known); `ids`: the reference fits that fitted; `flat`: those that do not improve with data."""

    is_reference: np.ndarray
    of_fit: np.ndarray
    reason: list[str | None]
    ids: list[int]
    flat: dict[int, str]

    @property
    def ok(self) -> np.ndarray:
        return np.array([r is None for r in self.reason])


def match_references(batch: TreatmentFits, reference: str) -> References:
    is_ref_fit = reference_mask(batch.fits, reference)
    own_reason = batch.reason
    ref_of_fit, reason = np.full(len(batch.fits), -1), list(own_reason)
    group_of_fit = batch.fits["_group"].to_numpy()
    refs_by_group = pd.Series(np.flatnonzero(is_ref_fit)).groupby(group_of_fit[is_ref_fit]).agg(list)
    for f in range(len(batch.fits)):
        refs = refs_by_group.get(group_of_fit[f], [])
        if len(refs) == 1:
            ref_of_fit[f] = refs[0]
        if reason[f] is not None:
            continue
        if not refs:
            reason[f] = f"no reference {reference!r} in this group"
        elif len(refs) > 1:
            reason[f] = f"ambiguous reference: {len(refs)} treatments with augmentation {reference!r}"
        elif own_reason[refs[0]] is not None:
            reason[f] = f"reference fit failed: {own_reason[refs[0]]}"
    ref_ids = sorted({int(r) for r in ref_of_fit if r >= 0 and own_reason[r] is None})
    flat = flat_references(batch.points, ref_ids)  # a reference that does not improve with data defines no v
    for f in range(len(batch.fits)):
        if reason[f] is None and ref_of_fit[f] in flat:
            reason[f] = flat[int(ref_of_fit[f])]
    return References(is_ref_fit, ref_of_fit, reason, ref_ids, flat)


@dataclass(frozen=True)
class InvertedRows:
    """One output row per (fit, data size) (`out`, filled column by column) and, per row, what the later steps
    read: its fit and reference fit, x, x + v, the treatment's fitted error, the reference's measured range."""

    out: pd.DataFrame
    fit: np.ndarray
    ref: np.ndarray
    x: np.ndarray
    x_equiv: np.ndarray
    e_aug: np.ndarray
    ok: np.ndarray
    own: np.ndarray
    size_lo: np.ndarray
    size_hi: np.ndarray
    below_asymptote: np.ndarray

    @property
    def has_ref(self) -> np.ndarray:
        return self.ref >= 0


def invert(batch: TreatmentFits, refs: References, keys: list[str], extrapolation_limit: float) -> InvertedRows:
    """x + v = f_ref⁻¹(f_aug(x)) per row, and the flags and model-free bounds that need no other family."""
    points, a, b, c = batch.points, batch.a, batch.b, batch.c
    size_lo = points.groupby("_fit")["data_size"].min().to_numpy(dtype=float)
    size_hi = points.groupby("_fit")["data_size"].max().to_numpy(dtype=float)
    out = (
        points.groupby(["_fit", "data_size"], sort=True)
        .agg(n_seeds=("seed", "nunique"), accuracy_mean=("accuracy", "mean"),
             accuracy_std=("accuracy", "std"))
        .reset_index()
    )
    fit = out["_fit"].to_numpy()
    ref = refs.of_fit[fit]
    has_ref = ref >= 0
    x = out["data_size"].to_numpy(dtype=float)
    ok = refs.ok[fit]
    ref_a, ref_b, ref_c = (np.where(has_ref, p[np.maximum(ref, 0)], np.nan) for p in (a, b, c))
    e_aug = power_law(x, a[fit], b[fit], c[fit])
    x_equiv = inverse_power_law(e_aug, ref_a, ref_b, ref_c)  # x + v
    own = ok & (fit == ref)  # the reference's own rows: exactly v = 0
    x_equiv = np.where(own, x, np.where(ok, x_equiv, np.nan))
    lo, hi = size_lo[np.maximum(ref, 0)], size_hi[np.maximum(ref, 0)]
    for name in keys:
        out[name] = batch.fits[name].take(fit).reset_index(drop=True)
    out["accuracy_fit"] = 1.0 - e_aug
    out["effective_extra_samples"] = x_equiv - x
    out["exchange_ratio"] = x_equiv / x
    out["extrapolated"] = ok & ~own & ((x_equiv < lo * (1 - _RTOL)) | (x_equiv > hi * (1 + _RTOL)))
    out["extrapolation_factor"] = np.where(ok, x_equiv / hi, np.nan)
    out["beyond_extrapolation_limit"] = ok & ~own & (x_equiv > extrapolation_limit * hi * (1 + _RTOL))
    bound_low, bound_high = measured_bounds(points, fit, refs.of_fit, x, out["accuracy_mean"].to_numpy(dtype=float))
    out["ref_size_max"] = np.where(ok, hi, np.nan)
    # the measured bounds need no curve: also against a reference that does not improve (no v, but a bound)
    measurable = ok | np.isin(ref, list(refs.flat)) & (fit != ref)
    out["v_bound_low"] = np.where(own, 0.0, np.where(measurable, bound_low, np.nan))
    out["v_bound_high"] = np.where(own, 0.0, np.where(measurable, bound_high, np.nan))
    out["ref_a"], out["ref_b"], out["ref_c"] = ref_a, ref_b, ref_c
    below_asymptote = ok & ~own & (e_aug <= ref_b)  # the fit's say-so: v = +inf
    return InvertedRows(out, fit, ref, x, x_equiv, e_aug, ok, own, lo, hi, below_asymptote)


def _add_verdicts(rows: InvertedRows, families: dict[str, dict[str, np.ndarray]], asymptote_high: np.ndarray | None,
                  extrapolation_limit: float, *, bootstrapped: bool) -> None:
    """What each row may claim once the other families and the reference's own data have had their say."""
    out, ref_index = rows.out, np.maximum(rows.ref, 0)
    verdict = family_verdicts(
        ok=rows.ok, own=rows.own, below_asymptote=rows.below_asymptote,
        extrapolated=out["extrapolated"].to_numpy(dtype=bool), x=rows.x, x_equiv=rows.x_equiv, e_aug=rows.e_aug,
        asymptote_high=asymptote_high, size_lo=rows.size_lo, size_hi=rows.size_hi, limit=extrapolation_limit,
        lower_acc=accuracy_lower_bound(out["accuracy_mean"].to_numpy(dtype=float),
                                       out["accuracy_std"].to_numpy(dtype=float), out["n_seeds"].to_numpy(dtype=float)),
        ref={name: {k: v[ref_index] for k, v in per_fit.items()} for name, per_fit in families.items()})
    for name, values in verdict.items():
        out[name] = values
    # a verdict the paper's curve does not give (it misfits a reference that another family fits): v is +inf
    newly = verdict["unbounded"] & np.isfinite(rows.x_equiv)
    out.loc[newly, ["effective_extra_samples", "exchange_ratio"]] = np.inf
    if bootstrapped:
        out.loc[newly, ["v_ci_low", "v_ci_high"]] = np.nan  # the misfitting curve's interval says nothing here


def _add_fit_columns(rows: InvertedRows, batch: TreatmentFits, refs: References,
                     diagnostics: tuple[list[str | None], np.ndarray, np.ndarray],
                     families: dict[str, dict[str, np.ndarray]]) -> None:
    """Each row's own fit and its reference's: parameters, diagnostics, the held-out largest size."""
    out, fit, has_ref, ref_index = rows.out, rows.fit, rows.has_ref, np.maximum(rows.ref, 0)
    at_bound, lack_of_fit, monotone = diagnostics
    holdout_error, holdout_ratio = holdout_largest(batch.sizes, batch.errors, batch.weights, refs.ids)
    out["ref_holdout_error"] = np.where(has_ref, holdout_error[ref_index], np.nan)
    out["ref_holdout_size_ratio"] = np.where(has_ref, holdout_ratio[ref_index], np.nan)
    for name in ("pure_power", "exponential"):
        out[f"ref_lack_of_fit_p_{name}"] = np.where(has_ref, families[name]["lack_of_fit_p"][ref_index], np.nan)
    out["fit_ok"] = rows.ok
    out["fit_reason"] = pd.Series([refs.reason[f] for f in fit], dtype=object)
    out["a"], out["b"], out["c"], out["rmse"] = batch.a[fit], batch.b[fit], batch.c[fit], batch.rmse[fit]
    out["fit_at_bound"] = pd.Series([at_bound[f] for f in fit], dtype=object)
    out["lack_of_fit_p"] = lack_of_fit[fit]
    out["ref_fit_at_bound"] = pd.Series([at_bound[r] if h else None for r, h in zip(ref_index, has_ref, strict=True)],
                                        dtype=object)
    out["ref_lack_of_fit_p"] = np.where(has_ref, lack_of_fit[ref_index], np.nan)
    out["ref_monotone"] = np.where(has_ref, monotone[ref_index], True)
    out["b_profile_low"], out["b_profile_high"] = batch.b_profile[0][fit], batch.b_profile[1][fit]
    out["ref_b_profile_low"] = np.where(has_ref, batch.b_profile[0][ref_index], np.nan)
    out["ref_b_profile_high"] = np.where(has_ref, batch.b_profile[1][ref_index], np.nan)
    out["is_reference"] = refs.is_reference[fit]


def _final_points(results: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The rows that are fit points, with only the columns the fits need; checks sizes and accuracies."""
    rows = results
    if "final" in rows.columns:
        rows = rows[rows["final"].astype("boolean").fillna(False).to_numpy(dtype=bool)]
    points = rows[[*keys, "data_size", "seed", "accuracy"]].copy()
    points = points[points["data_size"].notna() & points["accuracy"].notna()].reset_index(drop=True)
    bad_size = points["data_size"] <= 0
    if bad_size.any():
        first = points["data_size"][bad_size].iloc[0]
        raise ValueError(f"exchange_rates: data_size must be positive, got {first}")
    bad_acc = (points["accuracy"] < 0) | (points["accuracy"] > 1)
    if bad_acc.any():
        first = points["accuracy"][bad_acc].iloc[0]
        raise ValueError(f"exchange_rates: accuracy must be a fraction in [0, 1], got {first}")
    return points


def _point_weights(points: pd.DataFrame, weights: str) -> np.ndarray:
    """Each point's weight in its fit: 1, or 1/(variance over seeds at its fit and size), floored."""
    if weights == "equal":
        return np.ones(len(points))
    var = points.groupby(["_fit", "data_size"])["accuracy"].transform("var").fillna(0.0)
    floor = var.groupby(points["_fit"]).transform("median") / 10.0
    var = np.maximum(var.to_numpy(dtype=float), np.maximum(floor.to_numpy(dtype=float), 1e-12))
    w = 1.0 / var
    return w / pd.Series(w).groupby(points["_fit"].to_numpy()).transform("mean").to_numpy()  # mean weight 1


def _bootstrap_v(
    points: pd.DataFrame, fit_ok: np.ndarray, ref_of_fit: np.ndarray, fit: np.ndarray, x: np.ndarray,
    n_bootstrap: int, seed: int,
) -> tuple[np.ndarray, ...]:
    """Per output row: the seed-clustered interval of v (`intervals.py`), the seeds it resampled, the distinct
    resamples drawn, the interval of the reference's asymptotic accuracy 1 − b, and the interval of this fit's
    accuracy at the row's size, all from the same draws."""
    known = np.flatnonzero(fit_ok)
    needed = sorted({int(f) for f in known} | {int(r) for r in ref_of_fit[known]})
    replicates = seed_replicates(points, needed, n_bootstrap, seed)
    group_of_fit = points.drop_duplicates("_fit").set_index("_fit")["_group"]
    low, high = np.full(x.size, np.nan), np.full(x.size, np.nan)
    asymptote_low, asymptote_high = np.full(x.size, np.nan), np.full(x.size, np.nan)
    fit_low, fit_high = np.full(x.size, np.nan), np.full(x.size, np.nan)
    clusters, distinct = np.zeros(x.size, dtype=int), np.zeros(x.size, dtype=int)
    seeds_of_fit = points.groupby("_fit")["seed"].nunique()
    for f in known:
        rows = np.flatnonzero(fit == f)
        g = int(group_of_fit[f])
        # the seeds this fit and its reference both rest on: fewer than the group's where cells are missing
        n = min(replicates.clusters[g], int(seeds_of_fit[f]), int(seeds_of_fit[int(ref_of_fit[f])]))
        tail = expanded_tail(n, CI_LEVEL)
        clusters[rows], distinct[rows] = n, replicates.distinct[g]
        (a, b, c), (ra, rb, rc) = replicates.params[int(f)], replicates.params[int(ref_of_fit[f])]
        b_low, b_high = percentile_interval(rb[:, None], tail)  # the reference's asymptote: accuracy 1 − b
        asymptote_low[rows], asymptote_high[rows] = 1.0 - b_high[0], 1.0 - b_low[0]
        xs = x[rows][None, :]
        e_aug = power_law(xs, a[:, None], b[:, None], c[:, None])  # (B, sizes)
        fit_low[rows], fit_high[rows] = percentile_interval(1.0 - e_aug, tail)
        if ref_of_fit[f] == f:
            low[rows] = high[rows] = 0.0
            continue
        v = inverse_power_law(e_aug, ra[:, None], rb[:, None], rc[:, None]) - xs
        low[rows], high[rows] = percentile_interval(v, tail)
    return low, high, clusters, distinct, asymptote_low, asymptote_high, fit_low, fit_high
