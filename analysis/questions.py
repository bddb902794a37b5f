"""Two of the paper's questions as statements with intervals, from any sweep that has the treatments.

- `ood`: is an augmentation worth more (or less) real data on a shifted test set than in distribution? v on
  each eval set side by side, and v_OOD − v_ID paired over seeds: the same cells are seen on both sets, so one
  draw of seeds serves the treatment and the reference on both. Each row says whether the shift is held out
  from the augmentation's op space (none of the eval set's corruptions is one the policy can produce),
  covered, partly covered, or undeclared (a natural shift, or an eval set that names no corruptions): a gain
  on a covered shift is the augmentation seeing the test distribution, not robustness.
- `invariance` (section 4): v(augmentation) − v(built-in invariance), the invariance being the reference
  policy inside an invariant wrapper, per size with intervals, and its trend with size: the slope of
  log(x + v_aug) − log(x + v_inv) per doubling of x, with its interval from the same seed resampling.

`stochasticity.py` answers the third. Imports `results` and `search_spaces` only: which corruptions an eval
set holds and which ones a policy covers come from the registries, passed in by the command line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from augworth.analysis.intervals import warn_few_seeds
from augworth.analysis.paired import difference, family_p, final_rows, interval, paired_v
from augworth.analysis.question_verdicts import Verdicts, censor_differences, verdicts, with_verdicts
from augworth.analysis.treatments import reference_mask, treatment_labels
from augworth.results import GROUP_COLUMNS

LEVEL = 0.95


class QuestionError(ValueError):
    """The results lack what a question compares (no such eval set, no reference, no invariant model ...)."""


def shift_kind(covered: Iterable[str], corruptions: Iterable[str] | None) -> tuple[str, str]:
    """('held-out' | 'covered' | 'partly covered' | 'undeclared', the covered corruptions joined by ', ')."""
    corruptions = list(corruptions or ())
    if not corruptions:
        return "undeclared", ""
    hit = [c for c in corruptions if c in set(covered)]
    kind = "held-out" if not hit else "covered" if len(hit) == len(corruptions) else "partly covered"
    return kind, ", ".join(hit)


def ood(results: pd.DataFrame, *, reference: str = "none", in_distribution: str = "test",
        covers: Mapping[str, Iterable[str]] | None = None, corruptions: Mapping[str, Iterable[str]] | None = None,
        n_bootstrap: int = 1000, seed: int = 0, level: float = LEVEL) -> pd.DataFrame:
    """One row per (group, treatment, shifted eval set, size): v in distribution and on the shifted set, each
    with its interval, v_diff = v_ood − v_id with its interval, the sign-flip test of each size and the family-wise
    p over the treatment's shifted sets and sizes (its printed table: `paired.family_p`).

    `covers`: policy -> the corruptions its op space includes; `corruptions`: eval-set label -> the
    corruptions it holds (`shift_kind` names the row's shift from them; missing ones are 'undeclared')."""
    rows = final_rows(results)
    sets = set(rows["eval_set"])
    if in_distribution not in sets:
        raise QuestionError(f"ood: no eval set {in_distribution!r} in the results (have: {', '.join(sorted(sets))})")
    is_reference = pd.Series(reference_mask(rows, reference), index=rows.index)
    if not is_reference.any():
        raise QuestionError(f"ood: no reference {reference!r} (trained plainly) in the results")
    found = verdicts(rows, reference, n_bootstrap, seed)
    rows = rows.assign(_label=treatment_labels(rows, ~is_reference).where(~is_reference, None))
    group_cols = [c for c in GROUP_COLUMNS if c in rows.columns]
    out = []
    for _, group in rows.groupby(group_cols, dropna=False, sort=True) if group_cols else [(None, rows)]:
        ref = group[is_reference[group.index]]
        for label, treated in group[~is_reference[group.index]].groupby("_label", sort=True):
            for shifted in sorted(set(treated["eval_set"]) & set(ref["eval_set"]) - {in_distribution}):
                curves = [treated[treated["eval_set"] == name] for name in (in_distribution, shifted)]
                curves += [ref[ref["eval_set"] == name] for name in (in_distribution, shifted)]
                if any(c.empty for c in curves):
                    continue
                aug = str(treated["augmentation"].iloc[0])
                kind, hit = shift_kind((covers or {}).get(aug, ()), (corruptions or {}).get(shifted))
                frame = _two_sets(curves, found, n_bootstrap, seed, level).assign(
                    treatment=label, augmentation=aug, eval_set=shifted, in_distribution=in_distribution,
                    shift=kind, covered=hit)
                out.append(frame.assign(**{c: group[c].iloc[0] for c in group_cols}))
    columns = [*group_cols, "treatment", "augmentation", "eval_set", "in_distribution", "shift", "covered",
               "data_size", "n_seeds", "ref_size_max", "v_id", "v_id_ci_low", "v_id_ci_high",
               *_verdict_columns("v_id"), "v_ood", "v_ood_ci_low", "v_ood_ci_high", *_verdict_columns("v_ood"),
               "v_diff", "v_diff_ci_low", "v_diff_ci_high", "v_diff_censored", "ci_excludes_0", "mean_log_ratio",
               "p_sign_flip", "p_family", "family_claims", "differs"]
    # one family per printed table: a treatment's shifted sets and sizes within its group
    result = family_p(pd.concat(out, ignore_index=True), [*group_cols, "treatment"], level, seed)[columns] if out \
        else pd.DataFrame(columns=columns)
    warn_few_seeds("ood", result["n_seeds"], "difference")
    return result


def _verdict_columns(column: str) -> list[str]:
    return [f"{column}_unbounded", f"{column}_censored", f"{column}_bound_low"]


def _two_sets(curves: list[pd.DataFrame], found: Verdicts, n_bootstrap: int, seed: int, level: float
              ) -> pd.DataFrame:
    """Curves: treatment in distribution, treatment shifted, reference in distribution, reference shifted."""
    points = pd.concat([c.assign(_fit=i) for i, c in enumerate(curves)], ignore_index=True)
    sizes = np.array(sorted(set(curves[0]["data_size"]) & set(curves[1]["data_size"])), float)
    paired = paired_v(points, 4, [(0, 2), (1, 3)], sizes, n_bootstrap, seed)
    (id_low, id_high), (ood_low, ood_high) = (interval(paired, paired.replicates[i], level) for i in (0, 1))
    frame = pd.DataFrame({"data_size": sizes.astype(int), "n_seeds": len(paired.seeds),
                          "ref_size_max": float(curves[2]["data_size"].max()),
                          "v_id": paired.point[0], "v_id_ci_low": id_low, "v_id_ci_high": id_high,
                          "v_ood": paired.point[1], "v_ood_ci_low": ood_low, "v_ood_ci_high": ood_high,
                          **difference(paired, 1, 0, level, seed)})
    frame = with_verdicts(with_verdicts(frame, "v_id", found.of(curves[0], sizes)), "v_ood", found.of(curves[1], sizes))
    return censor_differences(frame, "v_diff", ("v_ood", "v_id"))


def invariance(results: pd.DataFrame, *, reference: str = "none", n_bootstrap: int = 1000, seed: int = 0,
               level: float = LEVEL) -> pd.DataFrame:
    """One row per (group, eval set, augmentation, invariant model, size): v of the augmented plain model and
    of the invariant model without augmentation (both against the plain reference), v_diff = v_aug − v_inv
    with its interval and test, and the comparison's trend with size (`trend_per_doubling` with its interval;
    the same on every size's row)."""
    rows = final_rows(results)
    if "invariance" not in rows.columns:
        raise QuestionError("invariance: the results have no invariance column (no invariant model was trained)")
    plain_views = ~rows["views"].astype(object).isin(["fixed", "same_batch"]) if "views" in rows else True
    inv = rows["invariance"].astype(object).fillna("none")
    is_reference = pd.Series(reference_mask(rows, reference), index=rows.index)
    invariant = (rows["augmentation"] == reference) & (inv != "none") & plain_views
    augmented = (rows["augmentation"] != reference) & (inv == "none") & plain_views
    if not invariant.any():
        raise QuestionError(f"invariance: no invariant model ({reference!r} inside an invariance other than none)")
    if not is_reference.any():
        raise QuestionError(f"invariance: no reference {reference!r} (trained plainly) in the results")
    found = verdicts(rows, reference, n_bootstrap, seed)
    labels = treatment_labels(rows, augmented).where(augmented, reference + " [invariance=" + inv + "]")
    rows = rows.assign(_label=labels)
    group_cols = [c for c in GROUP_COLUMNS if c in rows.columns]
    out = []
    for _, group in rows.groupby([*group_cols, "eval_set"], dropna=False, sort=True):
        ref = group[is_reference[group.index]]
        for aug_label, aug in group[augmented[group.index]].groupby("_label", sort=True):
            for inv_label, model in group[invariant[group.index]].groupby("_label", sort=True):
                if ref.empty:
                    continue
                frame = _against_invariance([aug, model, ref], found, n_bootstrap, seed, level)
                out.append(frame.assign(augmentation=aug_label, invariance=str(model["invariance"].iloc[0]),
                                        invariant_model=inv_label, eval_set=group["eval_set"].iloc[0],
                                        **{c: group[c].iloc[0] for c in group_cols}))
    columns = [*group_cols, "eval_set", "augmentation", "invariance", "invariant_model", "data_size", "n_seeds",
               "ref_size_max", "v_aug", "v_aug_ci_low", "v_aug_ci_high", *_verdict_columns("v_aug"), "v_inv",
               "v_inv_ci_low", "v_inv_ci_high", *_verdict_columns("v_inv"), "v_diff", "v_diff_ci_low",
               "v_diff_ci_high", "v_diff_censored", "ci_excludes_0",
               "p_sign_flip", "p_family", "family_claims", "differs", "trend_per_doubling", "trend_ci_low",
               "trend_ci_high", "trend_sizes", "trend_censored_sizes"]
    # one family per printed table: the group's augmentations, invariant models and sizes on one eval set
    result = family_p(pd.concat(out, ignore_index=True), [*group_cols, "eval_set"], level, seed)[columns] if out \
        else pd.DataFrame(columns=columns)
    warn_few_seeds("invariance", result["n_seeds"], "difference")
    return result


def _against_invariance(curves: list[pd.DataFrame], found: Verdicts, n_bootstrap: int, seed: int, level: float
                        ) -> pd.DataFrame:
    points = pd.concat([c.assign(_fit=i) for i, c in enumerate(curves)], ignore_index=True)
    sizes = np.array(sorted(set(curves[0]["data_size"]) & set(curves[1]["data_size"])), float)
    paired = paired_v(points, 3, [(0, 2), (1, 2)], sizes, n_bootstrap, seed)
    (aug_low, aug_high), (inv_low, inv_high) = (interval(paired, paired.replicates[i], level) for i in (0, 1))
    of_aug, of_inv = found.of(curves[0], sizes), found.of(curves[1], sizes)
    # no trend where either v does not exist (a reference that does not improve): not a choice by size
    defined = bool(of_aug["defined"].all() and of_inv["defined"].all())
    slope, low, high, used = trend(paired, level) if defined else (float("nan"),) * 3 + (0,)
    censored = of_aug["censored"] | of_inv["censored"]
    frame = pd.DataFrame({"data_size": sizes.astype(int), "n_seeds": len(paired.seeds),
                          "ref_size_max": float(curves[2]["data_size"].max()),
                          "v_aug": paired.point[0], "v_aug_ci_low": aug_low, "v_aug_ci_high": aug_high,
                          "v_inv": paired.point[1], "v_inv_ci_low": inv_low, "v_inv_ci_high": inv_high,
                          **difference(paired, 0, 1, level, seed), "trend_per_doubling": slope,
                          "trend_ci_low": low, "trend_ci_high": high, "trend_sizes": used,
                          "trend_censored_sizes": int((censored & finite_pair(paired)).sum())})
    frame = with_verdicts(with_verdicts(frame, "v_aug", of_aug), "v_inv", of_inv)
    return censor_differences(frame, "v_diff", ("v_aug", "v_inv"))


def finite_pair(paired) -> np.ndarray:
    """The sizes where both point v's are finite and x + v > 0: those `trend` uses."""
    return np.isfinite(paired.point[0]) & np.isfinite(paired.point[1]) & (paired.sizes + paired.point[:2] > 0).all(0)


def trend(paired, level: float) -> tuple[float, float, float, int]:
    """How the log ratio of the two exchange ratios, log(x + v_0) − log(x + v_1), changes per doubling of x:
    its least-squares slope against log2 x on the point fits, with the interval of the same slope over the seed
    resamples (one draw for all curves), and the number of sizes it uses. Only sizes where both point v's are
    finite count (an unbounded v has no log to take); a replicate unbounded at one of them is left out. NaN
    with fewer than 3 such sizes. Sizes whose v the verdicts censor are kept (choosing sizes by the data would
    bias the slope); the caller counts them."""
    finite = finite_pair(paired)
    if finite.sum() < 3:
        return float("nan"), float("nan"), float("nan"), int(finite.sum())
    t = np.log2(paired.sizes[finite])
    t = t - t.mean()

    def slope(v: np.ndarray) -> np.ndarray:  # v: (2, ..., k) at the finite sizes
        with np.errstate(divide="ignore", invalid="ignore"):  # inf − inf: NaN, and that replicate is left out
            logs = np.log(paired.sizes[finite] + v)  # NaN or inf where a replicate is unbounded or x + v <= 0
            d = logs[0] - logs[1]
        return np.where(np.isfinite(d).all(-1), (np.where(np.isfinite(d), d, 0.0) * t).sum(-1) / np.sum(t * t),
                        np.nan)

    low, high = interval(paired, slope(paired.replicates[:2, :, finite])[:, None], level)
    return float(slope(paired.point[:2, finite])), float(low[0]), float(high[0]), int(finite.sum())
