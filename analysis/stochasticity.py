"""The paper's third question (section 5): is an augmentation's worth in its randomness, and do gradient noise
and flatness explain it?

- The repetition curve: v of each view mode of an augmentation (random views; fixed views, each sample
  augmented r times once and frozen; k views of each image in the same batch) against the plain reference,
  with intervals; per fixed-view treatment the worth of each extra frozen view, (v_r − v_r0)/(r − r0) against
  the smallest r; and v_random − v_mode with its paired interval and sign-flip test (`paired.py`).
- Probe differences: gradient noise and flatness (and the Hessian's top eigenvalue where measured) of each view
  mode minus random views, seed by seed (the same seed: same subset, same initial weights), at each cell's
  last probed step: the mean difference, its t interval over seeds and the sign-flip p.
- Correlations: across the treatments of a group at one size, Pearson's r between a probe's mean and
  log((x + v)/x), its interval from whole seeds resampled (one draw for the refits and the probe means). The
  treatments themselves are not resampled: with 3-5 of them the interval says how sure r is for these
  treatments, not for treatments in general.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from augworth.analysis.intervals import expanded_p, warn_few_seeds
from augworth.analysis.paired import PairedV, difference, family_p, final_rows, holm, interval, paired_v, sign_flip
from augworth.analysis.question_verdicts import censor_differences, verdicts, with_verdicts
from augworth.analysis.questions import LEVEL, QuestionError
from augworth.analysis.treatments import reference_mask, treatment_labels
from augworth.results import GROUP_COLUMNS, PROBE_COLUMNS

# what makes two view modes "of the same augmentation": every treatment column but the views' own
_KIND = ["augmentation", "strength", "views", "views_r"]
_BASE = ["augmentation", "strength"]


def stochasticity(results: pd.DataFrame, *, reference: str = "none", n_bootstrap: int = 1000, seed: int = 0,
                  level: float = LEVEL) -> dict[str, pd.DataFrame]:
    """{'repetitions', 'probe_differences', 'correlations'}: three frames (empty where the sweep lacks what
    they need). `results`: every row of the sweep (probes may sit on rows before the final one)."""
    rows = final_rows(results)
    if "views" not in rows.columns or not rows["views"].astype(object).isin(["fixed", "same_batch"]).any():
        raise QuestionError("stochasticity: the results have no fixed or same-batch views (views: fixed | same_batch)")
    is_reference = pd.Series(reference_mask(rows, reference), index=rows.index)
    if not is_reference.any():
        raise QuestionError(f"stochasticity: no reference {reference!r} (trained plainly) in the results")
    inv = rows["invariance"].astype(object).fillna("none") if "invariance" in rows else pd.Series("none", rows.index)
    found = verdicts(rows, reference, n_bootstrap, seed)
    rows = rows.assign(_label=treatment_labels(rows, ~is_reference).where(~is_reference, None))
    probes = _last_probes(results, rows)
    group_cols = [c for c in GROUP_COLUMNS if c in rows.columns]
    repetitions, differences, correlations = [], [], []
    for _, group in rows.groupby([*group_cols, "eval_set"], dropna=False, sort=True):
        treated = group[~is_reference[group.index] & (inv[group.index] == "none")]
        ref = group[is_reference[group.index]]
        if ref.empty or treated.empty:
            continue
        names = sorted(treated["_label"].unique())
        curves = [ref] + [treated[treated["_label"] == name] for name in names]
        sizes = np.array(sorted(set(treated["data_size"])), float)
        points = pd.concat([c.assign(_fit=i) for i, c in enumerate(curves)], ignore_index=True)
        paired = paired_v(points, len(curves), [(i, 0) for i in range(len(curves))], sizes, n_bootstrap, seed)
        info = {c: group[c].iloc[0] for c in [*group_cols, "eval_set"]}
        kind_cols = [c for c in _KIND if c in treated.columns]
        kinds = {name: treated.loc[treated["_label"] == name, kind_cols].iloc[0] for name in names}
        of = [found.of(curve, sizes) for curve in curves[1:]]
        repetitions.append(_repetitions(paired, names, kinds, of, level, seed).assign(
            ref_size_max=float(ref["data_size"].max()), **info))
        mine = probes[probes["cell_key"].isin(set(group["cell_key"]))] if not probes.empty else probes
        censored = np.stack([verdict["censored"] for verdict in of])
        if all(verdict["defined"].all() for verdict in of):  # no correlation with a v that does not exist
            correlations.append(_correlations(paired, names, mine, sizes, censored, level).assign(**info))
    plain = probes[probes["_label"].notna() & probes["_plain"]] if not probes.empty else probes
    for _, group in plain.groupby(group_cols, dropna=False, sort=True) if not plain.empty else []:
        differences.append(_probe_differences(group, level, seed).assign(
            **{c: group[c].iloc[0] for c in group_cols}))
    # one family per printed table: a group's eval set (repetitions), a group's probe (the other two)
    out = {"repetitions": _family(_concat(repetitions), [*group_cols, "eval_set"], level, seed),
           "probe_differences": _family(_concat(differences), [*group_cols, "probe"], level, seed),
           "correlations": _holm_family(_concat(correlations), [*group_cols, "probe"], level)}
    warn_few_seeds("stochasticity", out["repetitions"].get("n_seeds", []), "difference")
    return out


def _family(frame: pd.DataFrame, by: list[str], level: float, seed: int) -> pd.DataFrame:
    """`paired.family_p` where the frame makes claims (rows with per-seed values)."""
    if frame.empty or "_d" not in frame.columns:
        return frame.drop(columns=["_d", "_seeds"], errors="ignore")
    return family_p(frame.assign(_d=frame["_d"].where(frame["_d"].notna(), None)), by, level, seed)


def _holm_family(frame: pd.DataFrame, by: list[str], level: float) -> pd.DataFrame:
    """Correlations: each r's bootstrap p (from the share of replicates on the other side of 0, as the expanded
    interval reads it: `intervals.expanded_p`), Holm-adjusted
    over the rows of one printed table (`p_family`), and `nonzero` (that p below 1 − level)."""
    if frame.empty:
        return frame
    frame = frame.reset_index(drop=True)
    adjusted = np.full(len(frame), np.nan)
    keys = [c for c in by if c in frame.columns]
    for rows in frame.groupby(keys, dropna=False, sort=False).groups.values():
        rows = np.asarray(list(rows))
        adjusted[rows] = holm(frame.loc[rows, "_p_boot"].to_numpy(float))
    return frame.drop(columns="_p_boot").assign(p_family=adjusted, family_claims=frame.groupby(
        keys, dropna=False, sort=False)["r"].transform("size"), nonzero=adjusted < 1.0 - level)


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _base(kind: pd.Series) -> tuple:
    return tuple(None if pd.isna(kind.get(c)) else kind.get(c) for c in _BASE)


def _mode(kind: pd.Series) -> tuple[str, float]:
    views = kind["views"] if isinstance(kind["views"], str) else "random"
    r = kind["views_r"]
    return views, (float(r) if views != "random" and pd.notna(r) else float("nan"))


def _repetitions(paired: PairedV, names: list[str], kinds: dict, of: list[dict[str, np.ndarray]], level: float,
                 seed: int) -> pd.DataFrame:
    """Per treatment and size: v and its interval, the ratio, the worth per extra frozen view, v_random − v.
    `of`: each treatment's verdicts (`Verdicts.of`); a difference with a censored v is censored."""
    out = []
    for i, name in enumerate(names, start=1):
        aug = kinds[name]["augmentation"]
        mode, r = _mode(kinds[name])
        low, high = interval(paired, paired.replicates[i], level)
        frame = pd.DataFrame({"treatment": name, "augmentation": aug, "views": mode, "r": r,
                              "data_size": paired.sizes.astype(int), "n_seeds": len(paired.seeds),
                              "v": paired.point[i], "v_ci_low": low, "v_ci_high": high,
                              "exchange_ratio": (paired.sizes + paired.point[i]) / paired.sizes})
        frame = with_verdicts(frame, "v", of[i - 1])
        same = [j for j, other in enumerate(names, start=1) if _base(kinds[other]) == _base(kinds[name])]
        random = [j for j in same if _mode(kinds[names[j - 1]])[0] == "random"]
        if random and mode != "random":
            d = difference(paired, random[0], i, level, seed)
            frame = frame.assign(v_random_minus=d["v_diff"], v_random_minus_ci_low=d["v_diff_ci_low"],
                                 v_random_minus_ci_high=d["v_diff_ci_high"], p_sign_flip=d["p_sign_flip"],
                                 _d=d["_d"], _seeds=d["_seeds"], _random_censored=of[random[0] - 1]["censored"])
            frame = censor_differences(frame, "v_random_minus", ("v", "_random")).drop(columns="_random_censored")
        fixed = {_mode(kinds[names[j - 1]])[1]: j for j in same if _mode(kinds[names[j - 1]])[0] == "fixed"}
        if mode == "fixed" and len(fixed) > 1 and r > min(fixed):
            base, r0 = fixed[min(fixed)], min(fixed)
            with np.errstate(invalid="ignore"):
                per_view = (paired.replicates[i] - paired.replicates[base]) / (r - r0)
                frame["v_per_extra_view"] = (paired.point[i] - paired.point[base]) / (r - r0)
            frame["v_per_extra_view_ci_low"], frame["v_per_extra_view_ci_high"] = interval(paired, per_view, level)
            frame["v_per_extra_view_censored"] = frame["v_censored"].to_numpy(bool) | of[base - 1]["censored"]
        out.append(frame)
    return pd.concat(out, ignore_index=True)


def _last_probes(results: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: its probes at the last step that has any, with the cell's label, size and seed."""
    probes = [c for c in PROBE_COLUMNS if c in results.columns and results[c].notna().any()]
    if not probes or "cell_key" not in results.columns:
        return pd.DataFrame()
    probed = results[results[probes].notna().any(axis=1)].sort_values("step").drop_duplicates("cell_key", keep="last")
    labels = rows.drop_duplicates("cell_key").set_index("cell_key")
    keep = probed["cell_key"].isin(labels.index)
    probed = probed[keep].assign(_label=probed.loc[keep, "cell_key"].map(labels["_label"]))
    inv = probed["invariance"].astype(object).fillna("none") if "invariance" in probed else "none"
    return probed.assign(_views=probed["views"].astype(object).fillna("random") if "views" in probed else "random",
                         _plain=pd.Series(inv, index=probed.index).eq("none"))


def _probe_differences(group: pd.DataFrame, level: float, seed: int) -> pd.DataFrame:
    """Per augmentation, view mode, size and probe: the paired mean difference mode − random over seeds."""
    probes = [c for c in PROBE_COLUMNS if c in group.columns and group[c].notna().any()]
    out = []
    treated = group[group["_label"].notna()]
    base = [c for c in _BASE if c in treated.columns]
    for key, block in treated.groupby([*base, "data_size"], dropna=False, sort=True):
        random = block[block["_views"] == "random"]
        if random["seed"].duplicated().any():  # more than one random-view treatment here: no single partner
            continue
        for name, mode in block[block["_views"] != "random"].groupby("_label", sort=True):
            for probe in probes:
                paired = pd.concat([mode.set_index("seed")[probe], random.set_index("seed")[probe]], axis=1,
                                   keys=["mode", "random"], join="inner").dropna()
                d = (paired["mode"] - paired["random"]).to_numpy(float)
                if d.size < 2:
                    continue
                half = stats.t.ppf(0.5 + level / 2, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size)
                out.append({"augmentation": key[0], "treatment": name, "data_size": int(key[-1]), "probe": probe,
                            "n_seeds": int(d.size), "mean_mode": float(paired["mode"].mean()),
                            "mean_random": float(paired["random"].mean()), "diff": float(d.mean()),
                            "diff_ci_low": float(d.mean() - half), "diff_ci_high": float(d.mean() + half),
                            "p_sign_flip": float(sign_flip(d[:, None], seed)[0]), "_d": d,
                            "_seeds": tuple(paired.index.tolist())})
    return pd.DataFrame(out)


def _correlations(paired: PairedV, names: list[str], probes: pd.DataFrame, sizes: np.ndarray, censored: np.ndarray,
                  level: float) -> pd.DataFrame:
    """Per size and probe: Pearson's r over treatments between the probe's mean and log((x + v)/x), and how many
    of those v the verdicts censor (`censored`: (T, k); they stay in: leaving out the largest v by the data
    would bias r)."""
    if probes.empty or len(names) < 3:
        return pd.DataFrame()
    out = []
    columns = [c for c in PROBE_COLUMNS if c in probes.columns and probes[c].notna().any()]
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = np.minimum(np.log((sizes + paired.point[1:]) / sizes), np.log(1e12))  # (T, k)
        log_ratio_boot = np.minimum(np.log((sizes + paired.replicates[1:]) / sizes), np.log(1e12))  # (T, B, k)
    for j, size in enumerate(sizes):
        seeds, counts = paired.draws.get(None) or (None, None)
        if seeds is None or counts is None:
            continue
        for probe in columns:
            at = probes[probes["data_size"] == size]
            if at.duplicated(["_label", "seed"]).any():
                raise ValueError("stochasticity: two cells of one treatment, size and seed in one group")
            table = at.pivot(index="_label", columns="seed", values=probe).reindex(index=names, columns=seeds)
            if table.notna().sum(axis=1).min() == 0:
                continue
            values = table.to_numpy(float)  # (T, seeds)
            w = counts[None, :, :] * np.isfinite(values)[:, None, :]  # (T, B, seeds)
            boot_means = np.nansum(w * np.nan_to_num(values)[:, None, :], axis=2) / w.sum(2)  # (T, B)
            r = _pearson(np.nanmean(values, axis=1)[:, None], log_ratio[:, j][:, None])[0]
            r_boot = _pearson(boot_means, log_ratio_boot[:, :, j])
            low, high = interval(paired, r_boot[:, None], level)
            finite = r_boot[np.isfinite(r_boot)]
            p_boot = expanded_p(min(np.mean(finite <= 0), np.mean(finite >= 0)), paired.clusters) if finite.size \
                else np.nan
            out.append({"data_size": int(size), "probe": probe, "n_treatments": len(names),
                        "n_censored": int(censored[:, j].sum()), "r": float(r),
                        "r_ci_low": float(low[0]), "r_ci_high": float(high[0]), "_p_boot": p_boot})
    return pd.DataFrame(out)


def _pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per column of (T, B) arrays, Pearson's r over the T rows (NaN where either is constant or not finite)."""
    ok = np.isfinite(x) & np.isfinite(y)
    n = ok.sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        xm = np.where(ok, x, 0).sum(0) / n
        ym = np.where(ok, y, 0).sum(0) / n
        dx, dy = np.where(ok, x - xm, 0), np.where(ok, y - ym, 0)
        r = (dx * dy).sum(0) / np.sqrt((dx * dx).sum(0) * (dy * dy).sum(0))
    return np.where(n >= 3, r, np.nan)
