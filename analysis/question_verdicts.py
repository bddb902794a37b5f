"""The exchange-rate tables' verdicts on the v's the paper's questions print.

A question fits its curves together (`paired.py`) for paired differences, but what a v may claim is the same as
in `augworth analyze`: `unbounded` only where every curve family that fits the reference shows it saturating
below the treatment, and a v that leans on extrapolation the families dispute, or past a reference asymptote the
data do not show, or against a reference that does not improve, is censored at what the measurements support
(a 95% bound, `verdicts.py`). So each question takes those verdicts from `exchange_rates` on the same rows,
with the same resamples, rather than deciding them a second way: one rule for every table.

Per v column `c` of a question's frame: `c_unbounded`, `c_censored` (no number to quote) and `c_bound_low` (the
measured bound on v, where it is censored). A difference of two v's where either is censored is marked
`<diff>_censored`: it prints as a bound where the row has one, its interval is left unprinted, and it is no
claim of its table's family-wise test (`differs` null): the test would rest on the curves' extrapolation, not
on the data.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from augworth.analysis.exchange import exchange_rates
from augworth.analysis.intervals import FewSeedsWarning
from augworth.analysis.treatments import row_key
from augworth.results import GROUP_COLUMNS, TREATMENT_COLUMNS

VERDICT_FIELDS = ("unbounded", "censored", "bound_low")


@dataclass(frozen=True)
class Verdicts:
    """The exchange-rate verdicts of every treated curve of some rows, looked up by a curve's rows."""

    keys: tuple[str, ...]  # the columns that name a curve (group, treatment, eval set), as exchange_rates has them
    by_curve: dict[Hashable, pd.DataFrame]  # curve key -> its rows of verdicts, indexed by data size

    def of(self, curve: pd.DataFrame, sizes: np.ndarray) -> dict[str, np.ndarray]:
        """`unbounded`, `censored`, `bound_low` of the curve's v at `sizes`, and `defined`: whether v exists at
        all (False where the fit failed or the reference does not improve: no exchange rate, whatever the curves
        say). A curve the exchange rates do not have (none should be missing) has no v: nothing is claimed."""
        found = self.by_curve.get(row_key([curve[c].iloc[0] if c in curve.columns else None for c in self.keys]))
        if found is None:
            return {"unbounded": np.zeros(sizes.size, bool), "censored": np.ones(sizes.size, bool),
                    "bound_low": np.full(sizes.size, np.nan), "defined": np.zeros(sizes.size, bool)}
        at = found.reindex(sizes.astype(float))
        return {"unbounded": at["unbounded"].fillna(False).to_numpy(bool),
                "censored": at["censored"].fillna(True).to_numpy(bool),
                "bound_low": at["v_bound_low"].to_numpy(float),
                "defined": at["fit_ok"].astype("boolean").fillna(False).to_numpy(bool)}


def verdicts(rows: pd.DataFrame, reference: str, n_bootstrap: int, seed: int) -> Verdicts:
    """The verdicts of `exchange_rates(rows, reference, n_bootstrap, seed)` for every treated curve of `rows`. Its
    few-seeds warning is left to the question, which warns for its own statements."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewSeedsWarning)
        rates = exchange_rates(rows, reference=reference, n_bootstrap=n_bootstrap, seed=seed)
    keys = tuple(c for c in [*GROUP_COLUMNS, *TREATMENT_COLUMNS, "eval_set"] if c in rates.columns)
    treated = rates[~rates["is_reference"].astype(bool)]
    # no fit (a flat reference, a failed fit) or a v censored by the families: no number to quote
    treated = treated.assign(censored=treated["v_censored"].astype(bool) | ~treated["fit_ok"].astype(bool),
                             unbounded=treated["unbounded"].astype(bool) & treated["fit_ok"].astype(bool))
    by_curve: dict[Hashable, pd.DataFrame] = {}
    for _, curve in treated.groupby(list(keys), dropna=False, sort=False):
        key = row_key([curve[c].iloc[0] for c in keys])
        by_curve[key] = curve.drop_duplicates("data_size").set_index(curve["data_size"].astype(float).to_numpy())
    return Verdicts(keys, by_curve)


def with_verdicts(frame: pd.DataFrame, column: str, found: dict[str, np.ndarray]) -> pd.DataFrame:
    """`frame` with `<column>_unbounded`, `<column>_censored`, `<column>_bound_low` from `Verdicts.of`."""
    return frame.assign(**{f"{column}_{name}": found[name] for name in VERDICT_FIELDS})


def censor_differences(frame: pd.DataFrame, diff: str, columns: tuple[str, str]) -> pd.DataFrame:
    """`<diff>_censored` where either v of the difference is censored. Such a row makes no claim: its per-seed
    values (`_d`, where the frame has them) are dropped before the table's family-wise test, so it is left out
    of the family and its `differs` (and `ci_excludes_0`) is null."""
    censored = frame[f"{columns[0]}_censored"].to_numpy(bool) | frame[f"{columns[1]}_censored"].to_numpy(bool)
    out = frame.assign(**{f"{diff}_censored": censored})
    if "ci_excludes_0" in out.columns:  # what an unprinted interval says is no verdict either
        out["ci_excludes_0"] = out["ci_excludes_0"].astype("boolean").mask(censored)
    if "_d" in out.columns:
        out["_d"] = [None if c else d for c, d in zip(censored, out["_d"], strict=True)]
    return out
