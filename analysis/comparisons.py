"""Is treatment A worth more real data than treatment B? Their paired difference of v at each size.

Both are measured against the same reference on the same seeds, so the comparison is paired twice over: the
interval of v_A − v_B comes from one draw of whole seeds shared by A, B and the reference, and the test flips
the signs of each seed's own log(x + v_A) − log(x + v_B) (`paired.py`), family-wise over the rows of one eval set
(step-down max-T). Each v carries `analyze`'s verdicts (`question_verdicts.py`): a censored v prints its measured
bound, and a difference with it is a bound and no claim of the test.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from augworth.analysis.intervals import warn_few_seeds
from augworth.analysis.paired import difference, family_p, final_rows, paired_v
from augworth.analysis.question_verdicts import Verdicts, censor_differences, verdicts, with_verdicts
from augworth.analysis.treatments import reference_mask, treatment_labels
from augworth.results import GROUP_COLUMNS

_REFERENCE = "\x00reference"  # the reference's rows, whatever a treatment label might read


def compare(results: pd.DataFrame, first: str, second: str, *, reference: str = "none", n_bootstrap: int = 1000,
            seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """One row per (group, eval set, size) where both treatments and the reference have fits: v of each, the
    difference v_first − v_second with its interval at `level`, the sign-flip p-value over seeds of each size
    alone, the family-wise p over the rows of one eval set (the printed table: `paired.family_p`) and `differs`
    (that p below 1 − level).

    `first` and `second` are treatments as `augworth analyze` tables print them, less any group columns
    ('crop(2)', 'crop(2) [fixed 4]'); `reference` is chosen as `exchange_rates` chooses it (this augmentation,
    trained plainly), and naming it as `first` or `second` compares against the reference itself (v = 0)."""
    if n_bootstrap < 1:
        raise ValueError(f"compare: n_bootstrap must be at least 1, got {n_bootstrap}")
    rows = final_rows(results)
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
    found = verdicts(rows.drop(columns="_label"), reference, n_bootstrap, seed)
    group_cols = [c for c in GROUP_COLUMNS if c in rows.columns]
    out = []
    for _, group in rows.groupby([*group_cols, "eval_set"], dropna=False, sort=True):
        if set(group["_label"]) == {*roles, _REFERENCE}:
            frame = _compare_group(group, [*roles, _REFERENCE], group_cols, found, n_bootstrap, seed, level)
            out.append(frame.assign(first=first, second=second, reference=reference))
    result = family_p(pd.concat(out, ignore_index=True), ["eval_set"], level, seed) if out else pd.DataFrame()
    warn_few_seeds("compare", result.get("n_seeds", []), "difference")
    return result


def _compare_group(group: pd.DataFrame, labels: list[str], group_cols: list[str], found: Verdicts, n_bootstrap: int,
                   seed: int, level: float) -> pd.DataFrame:
    # one fit per role (first, second, reference), also where a role's treatment is the reference
    points = pd.concat([group[group["_label"] == name].assign(_fit=i) for i, name in enumerate(labels)],
                       ignore_index=True)
    sizes = np.array(sorted(set(points.loc[points["_fit"] == 0, "data_size"]) & set(points.loc[points["_fit"] == 1,
                                                                                              "data_size"])), float)
    # a role that is the reference itself is the reference's curve: worth exactly 0
    pairs = [(2 if labels[i] == labels[2] else i, 2) for i in (0, 1)]
    paired = paired_v(points, 3, pairs, sizes, n_bootstrap, seed)
    first_row = group.iloc[0]
    frame = pd.DataFrame({
        **{c: first_row[c] for c in group_cols}, "eval_set": first_row["eval_set"], "first": labels[0],
        "second": labels[1], "reference": labels[2], "data_size": sizes.astype(int), "n_seeds": len(paired.seeds),
        "ref_size_max": float(group.loc[group["_label"] == labels[2], "data_size"].max()),
        "v_first": paired.point[0], "v_second": paired.point[1], **difference(paired, 0, 1, level, seed),
    })
    for i, column in enumerate(("v_first", "v_second")):
        curve = group[group["_label"] == labels[i]]
        # the reference compared with itself is worth exactly 0: no verdict to take
        of = found.of(curve, sizes) if labels[i] != labels[2] else {
            "unbounded": np.zeros(sizes.size, bool), "censored": np.zeros(sizes.size, bool),
            "bound_low": np.zeros(sizes.size), "defined": np.ones(sizes.size, bool)}
        frame = with_verdicts(frame, column, of)
    return censor_differences(frame, "v_diff", ("v_first", "v_second"))
