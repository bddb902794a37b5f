"""The probes of a sweep (gradient noise, flatness, the Hessian's top eigenvalue) per treatment and step.

A probe is measured once per (cell, step) and stored on every eval set's row of that step; this takes one value
per (cell, step) and summarises over seeds, with the same grouping as the exchange rates.
"""

from __future__ import annotations

import pandas as pd

from augworth.results import GROUP_COLUMNS, PROBE_COLUMNS, TREATMENT_COLUMNS


def probe_summary(results: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation and count over seeds of every probe, per group, treatment, size and step.

    `results`: store rows (any steps, any eval sets) with `cell_key`, `step` and the probe columns; rows without
    any probe value are ignored. Columns of the result: the grouping columns present, `data_size`, `step`, and
    `<probe>_mean`, `<probe>_std`, `<probe>_n` for each probe that has values.
    """
    probes = [c for c in PROBE_COLUMNS if c in results.columns and results[c].notna().any()]
    if not probes:
        return pd.DataFrame()
    rows = results[results[probes].notna().any(axis=1)].drop_duplicates(["cell_key", "step"])
    keys = [c for c in (*GROUP_COLUMNS, *TREATMENT_COLUMNS) if c in rows.columns] + ["data_size", "step"]
    summary = rows.groupby(keys, dropna=False)[probes].agg(["mean", "std", "count"])
    summary.columns = [f"{probe}_{'n' if stat == 'count' else stat}" for probe, stat in summary.columns]
    return summary.reset_index()
