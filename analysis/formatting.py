"""How a number of samples, an interval and a verdict read: one formatter for every table, terminal and HTML.

A v is printed as the data support it (`exchange.py`'s verdict columns): a whole number; "> N" where x + v lies
past the extrapolation limit (the curve, not the data, would speak); "≥ N" where it is censored (indeterminate,
families that fit the reference disagree, or the power law misfits it) at what the measurements support (a 95% bound);
"inf" where the row is unbounded; nothing where there is no fit. Text only: the terminal tables escape it for
rich (which reads "[inf, inf]" as markup) and the report for HTML.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

EXTRAPOLATION_LIMIT = 2.0  # x + v beyond this many times the largest reference size: shown as "> bound"
HOLDOUT_OFF = 0.5  # |log2| of the held-out size's ratio beyond which a row leaning on extrapolation says so


def missing(v: Any) -> bool:
    return v is None or type(v).__name__ == "NAType" or (isinstance(v, float) and math.isnan(v))  # pd.NA


def number(v: Any) -> str:
    if missing(v):
        return ""
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def flag(value: Any) -> bool:
    """A flag column's value: missing (a row the column does not concern) is False."""
    return not missing(value) and bool(value)


def v_text(d: Mapping[str, Any], key: str, limit: float) -> str:
    """The v column `key` of a row that carries its verdicts (`<key>_unbounded`, `_censored`, `_bound_low`, as the
    questions and `compare` do): "inf" where unbounded, "≥ N" where censored, else `samples`."""
    if flag(d.get(f"{key}_unbounded")):
        return "inf"
    if flag(d.get(f"{key}_censored")):
        return censored_samples(d.get(f"{key}_bound_low"))
    return samples(d[key], d["data_size"], limit)


def v_interval_text(d: Mapping[str, Any], key: str, limit: float) -> str:
    """The interval of such a v: none where it is censored (an interval of a number not to quote)."""
    if flag(d.get(f"{key}_censored")):
        return ""
    return interval(d.get(f"{key}_ci_low"), d.get(f"{key}_ci_high"), d["data_size"], limit)


def ratio_text(d: Mapping[str, Any], key: str, limit: float) -> str:
    """(x + v)/x of such a v, read as v is: "≥ r" where censored, "> r" past the extrapolation limit."""
    x, v = d["data_size"], d.get(key)
    if flag(d.get(f"{key}_censored")):
        bound = d.get(f"{key}_bound_low")
        return "" if missing(bound) else f"≥ {(x + bound) / x:.3g}"
    if flag(d.get(f"{key}_unbounded")) or v == math.inf:
        return "inf"
    if missing(v):
        return ""
    return f"> {limit / x:.3g}" if x + v > limit * (1 + 1e-9) else number((x + v) / x)


def censored_samples(bound: Any) -> str:
    """A censored v: "≥ N" at its measured bound, nothing without one."""
    return "" if missing(bound) else f"≥ {round(bound)}"


def samples(v: Any, x: float, limit: float) -> str:
    """Extra samples v at size x: whole, inf, or "> bound" where x + v is past `limit` samples."""
    if missing(v):
        return ""
    if v == math.inf or v == -math.inf:
        return "inf" if v > 0 else "-inf"
    return f"> {round(limit - x)}" if x + v > limit * (1 + 1e-9) else str(round(v))


def interval(low: Any, high: Any, x: float = 0.0, limit: float = math.inf) -> str:
    if missing(low) and missing(high):
        return ""
    return f"[{samples(low, x, limit)}, {samples(high, x, limit)}]"


def difference(d: Mapping[str, Any], first: str, second: str, key: str, limit: float) -> str:
    """first − second (v columns of one row): the number where both are numbers to quote, a bound where one of
    them is only a bound ("> N" past the extrapolation limit, or +inf; "≥ N" where the verdicts censor it at
    `<column>_bound_low`), nothing where both are."""
    x = d["data_size"]
    v1, v2, diff = d.get(first), d.get(second), d.get(key)
    censored = [flag(d.get(f"{name}_censored")) for name in (first, second)]
    if any(censored):  # v ≥ its measured bound: the difference is a bound where the other v is a number
        bound: Any = d.get(f"{first}_bound_low") if censored[0] else d.get(f"{second}_bound_low")
        other: Any = v2 if censored[0] else v1
        if all(censored) or missing(bound) or missing(other) or other == math.inf or x + other > limit * (1 + 1e-9):
            return ""
        return f"≥ {round(bound - other)}" if censored[0] else f"≤ {round(other - bound)}"
    if missing(diff) and (missing(v1) or missing(v2)):
        return ""
    far = [not missing(v) and (v == math.inf or x + v > limit * (1 + 1e-9)) for v in (v1, v2)]
    if far[0] and far[1]:
        return ""
    if far[0]:
        return f"> {round(limit - x - v2)}"
    if far[1]:
        return f"< {round(v1 - (limit - x))}"
    return samples(diff, 0, math.inf)


def bounded(v: Any, limit: float) -> str:
    """A difference of two v's of one row, in samples: past ±`limit` (the extrapolation limit in samples) one of
    the two must be past it (every x + v >= 0), so it reads as the bound "> N" / "< −N", not as the curve's
    extrapolated number."""
    if missing(v):
        return ""
    if v == math.inf or v == -math.inf:
        return "inf" if v > 0 else "-inf"
    if v > limit:
        return f"> {round(limit)}"
    return f"< {-round(limit)}" if v < -limit else str(round(v))


def difference_interval(low: Any, high: Any, limit: float) -> str:
    """The interval of a difference of two v's, its ends as `bounded` reads them."""
    if missing(low) and missing(high):
        return ""
    return f"[{bounded(low, limit)}, {bounded(high, limit)}]"


@dataclass(frozen=True)
class RateText:
    """One exchange-rate row as it reads: v, its interval, the ratio (x + v)/x and the note."""

    v: str
    ci: str
    ratio: str
    note: str


def rate_text(d: Mapping[str, Any], extrapolation_limit: float = EXTRAPOLATION_LIMIT) -> RateText:
    """A row of `exchange_rates` as text (see the module's docstring)."""
    x = d["data_size"]
    limit = extrapolation_limit * d.get("ref_size_max", math.inf)
    v, ratio = d.get("effective_extra_samples"), d.get("exchange_ratio")
    ci = interval(d.get("v_ci_low"), d.get("v_ci_high"), x, limit)
    if not d.get("fit_ok", True):  # no curve to invert; a bound from the measured means, where there is one
        bound: Any = d.get("v_bound_low")
        return RateText("" if missing(bound) else f"≥ {round(bound)}", "", "", f"no fit: {d.get('fit_reason')}")
    notes = []
    if d.get("unbounded"):
        notes.append("unbounded")
        v_text, ratio_text = "inf", "inf"
    elif d.get("v_censored") or (d.get("indeterminate") and "v_censored" not in d):
        bound = d.get("v_bound_low")
        v_text = censored_samples(bound)
        ratio_text = "" if missing(bound) else f"≥ {(x + bound) / x:.3g}"
        ci = ""  # an interval of a number not to quote
        if d.get("indeterminate"):
            notes.append("indeterminate: past the reference's asymptote by the fit, not by the data")
        elif d.get("families_disagree"):
            others = []
            for name in ("pure_power", "exponential"):
                reach: Any = d.get(f"x_plus_v_{name}")
                if not missing(reach):
                    others.append(f"{name.replace('_', ' ')}: x+v {'inf' if reach == math.inf else round(reach)}")
            notes.append("curve families disagree" + (f" ({'; '.join(others)})" if others else ""))
        else:
            notes.append("censored: the power law misfits the reference")
    else:
        v_text = samples(v, x, limit)
        if d.get("beyond_extrapolation_limit") and not missing(ratio) and ratio != math.inf:
            ratio_text = f"> {limit / x:.3g}"
        else:
            ratio_text = "inf" if ratio == math.inf else number(ratio)
        if d.get("extrapolated"):
            notes.append("extrapolated")
    beyond = d.get("unbounded") or d.get("indeterminate") or (not missing(v) and x + v > d.get("ref_size_max",
                                                                                                 math.inf))
    held: Any = d.get("ref_holdout_size_ratio")
    if beyond and not missing(held) and held > 0 and (held == math.inf or abs(math.log2(held)) > HOLDOUT_OFF):
        notes.append("the reference's curve fitted without its largest size " + (
            "never reaches that size's accuracy" if held == math.inf else f"reaches it only at {held:.2g}× that size"
            if held > 1 else f"reaches it already at {held:.2g}× that size"))
    notes.extend(diagnostics(d))
    return RateText(v_text, ci, ratio_text, "; ".join(notes))


def diagnostics(d: Mapping[str, Any], misfit: float = 0.01, wide_asymptote: float = 0.1) -> list[str]:
    """A row's fit diagnostics worth a reader's attention (exchange.py's columns), in words. A reference
    asymptote whose profile interval spans more than `wide_asymptote` is named where v leans on it."""
    notes = []
    for prefix, who in (("", "curve"), ("ref_", "reference curve")):
        p: Any = d.get(f"{prefix}lack_of_fit_p")
        if not missing(p) and p < misfit:
            notes.append(f"{who} misfits (p={p:.1g})")
        if d.get(f"{prefix}fit_at_bound"):
            notes.append(f"{who}: {d[f'{prefix}fit_at_bound']}")
    if d.get("ref_monotone") is False or d.get("ref_monotone") == 0:
        notes.append("reference falls with size")
    low: Any = d.get("ref_b_profile_low")
    high: Any = d.get("ref_b_profile_high")
    leans_on_asymptote = d.get("unbounded") or d.get("indeterminate") or d.get("extrapolated")
    if leans_on_asymptote and not missing(low) and not missing(high) and high - low > wide_asymptote:
        notes.append(f"reference asymptote acc {1 - high:.2f}-{1 - low:.2f} (profile)")
    return notes
