"""The terminal tables of `augworth analyze --question ood|invariance|stochasticity` (rich)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from rich.markup import escape
from rich.table import Table

from .formatting import bounded, difference, difference_interval, flag, missing, ratio_text, v_interval_text, v_text
from .tables import cell_text, whole
from .verdicts import EXTRAPOLATION_LIMIT

_CI = "95% CI: whole seeds resampled, one draw for every curve compared (expanded percentile)"
_TEST = ("p (table): signs of each seed flipped together for every claim of this table, its largest statistic "
         "per flip giving each claim's family-wise p (max-T over the table's claims); differs: too few seeds where "
         "no p could reach 0.05")
_V = (f"> N: x + v past {EXTRAPOLATION_LIMIT:g} × the reference's largest size (the curve, not the data, would "
      "speak); ≥ N: censored at what the measurements support (a 95% bound), as `augworth analyze` censors it "
      "(curve families that fit the reference disagree, an asymptote the data do not show, a reference that does "
      "not improve), and a difference with it is a bound, no claim of the test; inf: every family that fits the "
      "reference shows it saturating below the treatment")


def _limit(d: dict[str, Any]) -> float:
    return EXTRAPOLATION_LIMIT * d.get("ref_size_max", math.inf)


def _v(d: dict[str, Any], key: str) -> str:
    """A number of samples v at size x as the exchange-rate tables print it, with its verdicts
    (`question_verdicts.py`): "inf", "≥ N", "> N" past the extrapolation limit."""
    return v_text(d, key, _limit(d))


def _ci(d: dict[str, Any], key: str) -> str:
    return escape(v_interval_text(d, key, _limit(d)))


def _diff_ci(d: dict[str, Any], key: str) -> str:
    """A difference's interval: ends past the extrapolation limit as bounds (`formatting.difference_interval`);
    none where the difference is censored."""
    if flag(d.get(f"{key}_censored")):
        return ""
    return escape(difference_interval(d.get(f"{key}_ci_low"), d.get(f"{key}_ci_high"), _limit(d)))


def _diff(d: dict[str, Any], first: str, second: str, key: str = "v_diff") -> str:
    """first − second: a bound where either v is only a bound (`formatting.difference`)."""
    return escape(difference(d, first, second, key, _limit(d)))


def _raw(d: dict[str, Any], key: str) -> str:
    """A difference of v's as one number (`formatting.bounded`)."""
    return bounded(d[key], _limit(d))


def _yes(value: Any, censored: Any = False) -> str:
    if flag(censored):
        return "censored"
    return "too few seeds" if missing(value) else ("yes" if value else "no")


def by_group(rows: pd.DataFrame, key: str) -> list[tuple[str, pd.DataFrame]]:
    """(title prefix, rows) per value of `key` and per group where group columns vary (width, model ...)."""
    from augworth.results import GROUP_COLUMNS

    varying = [c for c in GROUP_COLUMNS if c in rows.columns and rows[c].astype(str).nunique() > 1]
    out = []
    for values, part in rows.groupby([*varying, key], dropna=False, sort=False) if varying else rows.groupby(
            key, sort=False):
        values = values if isinstance(values, tuple) else (values,)
        where = ", ".join(f"{c}={v}" for c, v in zip(varying, values, strict=False))
        out.append((escape(str(values[-1])) + (f" ({escape(where)})" if where else ""), part))
    return out


def ood_table(rows: pd.DataFrame, title: str) -> Table:
    table = Table("treatment", "shifted set", "shift", "size x", "v in dist.", "95% CI", "v shifted", "95% CI",
                  "shifted − in dist.", "95% CI", "p (table)", "differs", title=title, caption_justify="left",
                  caption=f"shift: held-out = none of the set's corruptions is in the policy's op space; covered "
                  f"(or partly) = the policy can produce them; undeclared = a natural shift. {_V}. {_CI}; {_TEST}; the "
                  "test's null: each seed's log((x+v_ood)/(x+v_id)) has mean 0 (not v_ood = v_id in samples)")
    for d in rows.to_dict("records"):
        shift = d["shift"] + (f" ({d['covered']})" if d["covered"] else "")
        table.add_row(escape(d["treatment"]), d["eval_set"], shift, str(d["data_size"]), _v(d, "v_id"),
                      _ci(d, "v_id"), _v(d, "v_ood"), _ci(d, "v_ood"), _diff(d, "v_ood", "v_id"),
                      _diff_ci(d, "v_diff"), cell_text(d["p_family"]), _yes(d["differs"], d.get("v_diff_censored")))
    return whole(table, "treatment", "shifted set", "95% CI")


def invariance_table(rows: pd.DataFrame, title: str) -> Table:
    table = Table("augmentation", "invariant model", "size x", "v aug", "95% CI", "v invariance", "95% CI",
                  "aug − invariance", "95% CI", "p (table)", "trend / doubling", "95% CI", title=title,
                  caption_justify="left", caption=f"both v against the plain model without augmentation. {_V}. {_CI}; "
                  f"{_TEST}. trend: per doubling of x, the change of log(x+v_aug) − log(x+v_inv) (slope over "
                  "the sizes; its CI from the same resampling; sizes with a censored v stay in, on the curves' "
                  "numbers, and are counted)")
    for d in rows.to_dict("records"):
        trend = "" if missing(d["trend_per_doubling"]) else f"{d['trend_per_doubling']:+.3f}" + (
            f" ({d['trend_censored_sizes']} of {d['trend_sizes']} sizes censored)"
            if d.get("trend_censored_sizes") else "")
        trend_ci = "" if missing(d["trend_ci_low"]) else escape(
            f"[{d['trend_ci_low']:+.3f}, {d['trend_ci_high']:+.3f}]")
        table.add_row(escape(d["augmentation"]), escape(d["invariant_model"]), str(d["data_size"]), _v(d, "v_aug"),
                      _ci(d, "v_aug"), _v(d, "v_inv"), _ci(d, "v_inv"), _diff(d, "v_aug", "v_inv"),
                      _diff_ci(d, "v_diff"),
                      cell_text(d["p_family"]), trend, trend_ci)
    return whole(table, "augmentation", "invariant model", "95% CI")


def repetition_table(rows: pd.DataFrame, title: str) -> Table:
    table = Table("treatment", "size x", "v", "95% CI", "(x+v)/x", "v per extra view", "95% CI",
                  "random − this", "95% CI", "p (table)", "differs", title=title, caption_justify="left",
                  caption=f"v against the plain model without augmentation; per extra view: (v_r − v_r0)/(r − r0) "
                  f"against the fewest fixed views. {_V}. {_CI}; {_TEST}")
    for d in rows.to_dict("records"):
        per_view = "" if missing(d.get("v_per_extra_view")) else "censored" if flag(d.get(
            "v_per_extra_view_censored")) else _raw(d, "v_per_extra_view")
        minus = "" if missing(d.get("v_random_minus")) else "censored" if flag(d.get(
            "v_random_minus_censored")) else _raw(d, "v_random_minus")
        ratio = ratio_text(d, "v", _limit(d))
        table.add_row(escape(d["treatment"]), str(d["data_size"]), _v(d, "v"), _ci(d, "v"), ratio, per_view,
                      _diff_ci(d, "v_per_extra_view"), minus,
                      _diff_ci(d, "v_random_minus"), cell_text(d.get("p_family")),
                      "" if missing(d.get("v_random_minus")) else _yes(d.get("differs"),
                                                                       d.get("v_random_minus_censored")))
    return whole(table, "treatment", "95% CI")


def probe_difference_table(rows: pd.DataFrame, title: str) -> Table:
    table = Table("treatment", "size x", "probe", "seeds", "this", "random views", "this − random", "95% CI", "p",
                  "p (table)", "differs", title=title, caption_justify="left", caption="per seed, this view mode "
                  "minus random views (same subset, same initial weights) at the last probed step; t interval over "
                  f"seeds; p: sign flip of this row alone; {_TEST}")
    for d in rows.to_dict("records"):
        table.add_row(escape(d["treatment"]), str(d["data_size"]), d["probe"], str(d["n_seeds"]),
                      cell_text(d["mean_mode"]), cell_text(d["mean_random"]), cell_text(d["diff"]),
                      escape(f"[{d['diff_ci_low']:.3g}, {d['diff_ci_high']:.3g}]"), cell_text(d["p_sign_flip"]),
                      cell_text(d.get("p_family")), _yes(d.get("differs")))
    return whole(table, "treatment", "95% CI")


def correlation_table(rows: pd.DataFrame, title: str) -> Table:
    table = Table("eval set", "size x", "probe", "treatments", "r", "95% CI", "p (table)", "nonzero", title=title,
                  caption_justify="left",
                  caption="Pearson's r over a group's treatments between the probe's mean and log((x+v)/x); "
                  "95% CI: whole seeds resampled for both (the treatments are these, not a sample of treatments); "
                  "p (table): from the share of resamples on the other side of 0, as the expanded interval reads it, "
                  "Holm over this table's rows; "
                  "a treatment whose v is censored stays in, on its curve's number, and is counted")
    for d in rows.to_dict("records"):
        ci = "" if missing(d["r_ci_low"]) else escape(f"[{d['r_ci_low']:+.2f}, {d['r_ci_high']:+.2f}]")
        treatments = str(d["n_treatments"]) + (f" ({d['n_censored']} censored)" if d.get("n_censored") else "")
        table.add_row(d["eval_set"], str(d["data_size"]), d["probe"], treatments,
                      "" if missing(d["r"]) else f"{d['r']:+.2f}", ci, cell_text(d.get("p_family")),
                      "" if missing(d.get("p_family")) else ("yes" if d.get("nonzero") else "no"))
    return whole(table, "95% CI")
