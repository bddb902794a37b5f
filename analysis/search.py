"""What an adaptive search found, per study: its best point with an interval over seeds, that point's exchange
rate against the grid's reference curve, and the best grid point at the same size where a grid of the policy
exists. `augworth best` and the report share it.

The trials come from the Optuna storage (`read_trials`, plain rows); the accuracies from the store's rows.
The best point is the trial with the highest mean over its seeds. Its interval is a t interval over those
seeds: valid for that point, not corrected for having picked it as the best of many (the winner's curse
makes its mean optimistic; train it again with fresh seeds to measure it without selection). The exchange
rate resamples whole seeds shared by the point and the reference curve (the same clustered draws as
`exchange_rates`), so it carries the reference's uncertainty too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from results.schema import GROUP_COLUMNS

from .exchange import reference_mask
from .fit import fit_power_law, inverse_power_law
from .intervals import expanded_tail, percentile_interval, seed_replicates, warn_few_seeds
from .paired import final_rows
from .verdicts import EXTRAPOLATION_LIMIT

SEARCHED_FIELDS = ("strength", "lr", "momentum", "weight_decay")  # search_spaces.SEARCHABLE's cell fields
STATES = ("complete", "running", "pruned", "failed")
_STATE_NAMES = {"COMPLETE": "complete", "RUNNING": "running", "PRUNED": "pruned", "FAIL": "failed"}


def read_trials(url: str, sweep: str) -> pd.DataFrame:
    """Every trial of the sweep's studies (names '<sweep>/...') in the Optuna storage at `url` (a journal file
    or a database URL): study, number, state, value, params, cell_keys, pruned_at."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if "://" in url:
        storage = optuna.storages.RDBStorage(url)
    else:
        from optuna.storages.journal import JournalFileBackend

        storage = optuna.storages.JournalStorage(JournalFileBackend(url))
    rows = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        if not summary.study_name.startswith(f"{sweep}/"):
            continue
        for t in storage.get_all_trials(summary._study_id, deepcopy=False):
            rows.append({"study": summary.study_name, "number": t.number,
                         "state": _STATE_NAMES.get(t.state.name, t.state.name.lower()), "value": t.value,
                         "params": dict(t.params), "cell_keys": list(t.user_attrs.get("cell_keys", [])),
                         "pruned_at": t.user_attrs.get("pruned_at")})
    return pd.DataFrame(rows, columns=["study", "number", "state", "value", "params", "cell_keys", "pruned_at"])


def trial_counts(trials: pd.DataFrame) -> list[dict[str, Any]]:
    """Per study: trials complete, running, pruned, failed."""
    out = []
    for study, group in trials.groupby("study", sort=True):
        counts = group["state"].value_counts()
        out.append({"study": study} | {s: int(counts.get(s, 0)) for s in STATES})
    return out


def _t_interval(values: np.ndarray, level: float) -> tuple[float, float]:
    """The t interval of the mean of accuracies, kept within [0, 1]."""
    if values.size < 2:
        return float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, values.size - 1) * values.std(ddof=1) / np.sqrt(values.size)
    return float(max(0.0, values.mean() - half)), float(min(1.0, values.mean() + half))


def _same_group(rows: pd.DataFrame, like: pd.Series, ignore: Sequence[str]) -> pd.DataFrame:
    """Rows whose group columns (minus `ignore`) equal `like`'s."""
    mask = np.ones(len(rows), dtype=bool)
    for column in GROUP_COLUMNS:
        if column in ignore or column not in rows.columns:
            continue
        value = like.get(column)
        mask &= (rows[column].isna() if pd.isna(value) else rows[column].astype(object).eq(value)).to_numpy(bool)
    return rows[mask]


def best_points(results: pd.DataFrame, trials: pd.DataFrame, *, objective: str = "test", reference: str = "none",
                grid: pd.DataFrame | None = None, level: float = 0.95, n_bootstrap: int = 1000,
                seed: int = 0) -> pd.DataFrame:
    """One row per study with a complete trial. `results`: the sweep's rows; `grid`: rows of other sweeps trained
    as grids. The reference curve and the grid's best come from the grid points of both."""
    rows = final_rows(results)
    rows = rows[rows["eval_set"] == objective]
    pool = rows if grid is None else pd.concat([rows, final_rows(grid)], ignore_index=True)
    pool = pool[pool["eval_set"] == objective]
    if "search_study" in pool.columns:  # the grid points: this sweep's and the other grids'
        pool = pool[pool["search_study"].isna()]
    pool = pool.drop_duplicates(["cell_key", "eval_set"])
    references = pool[reference_mask(pool, reference)]
    grid_rows = pool
    out = []
    for study, group in trials[trials["state"] == "complete"].groupby("study", sort=True):
        best = group.loc[group["value"].astype(float).idxmax()]
        cells = rows[rows["cell_key"].isin(best["cell_keys"])]
        if cells.empty:
            continue
        first = cells.iloc[0]
        x = float(first["data_size"])
        acc = cells.sort_values("seed")["accuracy"].to_numpy(float)
        low, high = _t_interval(acc, level)
        row = {"study": study, "policy": first["augmentation"], "data_size": int(x),
               "trials": int((trials["study"] == study).sum()),
               "complete": len(group),
               "pruned": int(((trials["study"] == study) & (trials["state"] == "pruned")).sum()),
               "best_trial": int(best["number"]), **{f"param_{k}": v for k, v in best["params"].items()},
               "accuracy": float(acc.mean()), "accuracy_ci_low": low, "accuracy_ci_high": high, "seeds": acc.size}
        row["ci_note"] = (f"t interval over this point's seeds; not adjusted for picking the best of {len(group)} "
                          "trials (optimistic: train the point again with fresh seeds to measure it)")
        searched = [f for f in SEARCHED_FIELDS if f in best["params"]]
        # against the plain reference (as exchange_rates): the group's settings but the searched ones
        ref, note = _one_reference(_same_group(references, first, searched), searched, set(rows["cell_key"]))
        row |= _exchange(ref, cells, x, level, n_bootstrap, seed) if note is None else _no_v(note)
        row |= _grid_best(grid_rows, first, x, level, searched)
        # cells trained: a trial that repeats an earlier point reuses its cells
        row["search_cells"] = len(set().union(*map(set, trials.loc[trials["study"] == study, "cell_keys"])))
        out.append(row)
    frame = pd.DataFrame(out)
    warn_few_seeds("best", frame.get("seeds", []))
    return frame


def _no_v(note: str) -> dict[str, Any]:
    return {"v": np.nan, "v_ci_low": np.nan, "v_ci_high": np.nan, "ratio": np.nan, "v_note": note}


def _one_reference(ref: pd.DataFrame, searched: Sequence[str], own: set[str]) -> tuple[pd.DataFrame, str | None]:
    """The reference curve: one setting of the searched optimiser fields (this sweep's own where grids of other
    sweeps add others); a note instead where it is ambiguous."""
    fields = [f for f in searched if f in ref.columns and f != "strength"]
    if not fields or ref.empty or len(ref[fields].drop_duplicates()) == 1:
        return ref, None
    mine = ref[ref["cell_key"].isin(own)]
    if len(mine[fields].drop_duplicates()) == 1:
        setting = mine[fields].iloc[0]
        return ref[(ref[fields] == setting).all(axis=1)], None
    return ref, f"ambiguous reference: several settings of {', '.join(fields)}"


def _exchange(ref: pd.DataFrame, cells: pd.DataFrame, x: float, level: float, n_bootstrap: int,
              seed: int) -> dict[str, Any]:
    """v at x of the point's mean accuracy against the reference curve, resampling the seeds both have."""
    empty = _no_v("no reference curve")
    common = sorted(set(ref["seed"]) & set(cells["seed"]))
    ref = ref[ref["seed"].isin(common)]
    if ref["data_size"].nunique() < 3 or len(common) < 2:
        return empty
    points = ref.assign(_fit=0, _group=0).sort_values(["_fit", "data_size"], ignore_index=True)
    replicates = seed_replicates(points, [0], n_bootstrap, seed)
    seeds, counts = replicates.draws[0][None]  # whole seeds, whatever the subsets
    common = [s for s in seeds if s in set(cells["seed"])]
    if len(common) < len(seeds):  # a seed of the curve's draw the point lacks: nothing to pair it with
        return empty | {"v_note": "the point lacks seeds of the reference's cells"}
    point = cells.set_index("seed")["accuracy"].groupby(level=0).mean().reindex(seeds)
    fit = fit_power_law(ref["data_size"], 1.0 - ref["accuracy"])
    if not fit.ok:
        return empty | {"v_note": f"reference fit failed: {fit.reason}"}
    v = float(inverse_power_law(1.0 - point.mean(), fit.a, fit.b, fit.c)) - x
    acc_b = counts @ point.to_numpy(float) / counts.sum(axis=1)
    a, b, c = replicates.params[0]
    v_b = inverse_power_law(1.0 - acc_b, a, b, c) - x
    tail = expanded_tail(len(seeds), level)
    low, high = (float(end[0]) for end in percentile_interval(v_b[:, None], tail))
    b_low = float(percentile_interval(b[:, None], tail)[0][0])
    largest = float(ref["data_size"].max())
    if not np.isfinite(v):
        note = ("unbounded: above the reference's asymptote interval" if point.mean() > 1.0 - b_low
                else "indeterminate: at the reference's asymptote, within its interval")
    elif x + v > EXTRAPOLATION_LIMIT * largest:
        note = f"x + v > {EXTRAPOLATION_LIMIT:g} x the largest reference size ({largest:g})"
    elif x + v > largest:
        note = "extrapolated past the largest reference size"
    else:
        note = ""
    return {"v": v, "v_ci_low": low, "v_ci_high": high, "ratio": (x + v) / x, "v_note": note}


def _grid_best(grid: pd.DataFrame, like: pd.Series, x: float, level: float, searched: Sequence[str]
               ) -> dict[str, Any]:
    """The best mean over seeds among the grid's points of the same treatment (its views and invariance), size
    and group, the searched fields free."""
    rows = grid[(grid["augmentation"] == like["augmentation"]) & (grid["data_size"] == x)]
    for column, neutral in (("views", "random"), ("views_r", None), ("views_first_clean", False),
                            ("invariance", "none")):
        if column in rows.columns:
            mine = like.get(column, neutral)
            mine = neutral if pd.isna(mine) else mine  # missing (an older file's null, pandas' NA) is neutral
            if mine is None:
                rows = rows[rows[column].isna().to_numpy(bool)]
            else:
                values = rows[column].astype(object).where(rows[column].notna(), neutral)
                rows = rows[values.eq(mine).fillna(False).to_numpy(bool)]
    rows = _same_group(rows, like, searched)
    if rows.empty:
        return {"grid_points": 0}
    keys = [c for c in dict.fromkeys(["strength", *searched]) if c in rows.columns]
    means = rows.groupby(keys, dropna=False)["accuracy"].agg(["mean", "size"])
    top = means["mean"].idxmax()
    top = top if isinstance(top, tuple) else (top,)
    mask = np.ones(len(rows), dtype=bool)
    for k, v in zip(keys, top, strict=True):
        mask &= (rows[k].isna() if pd.isna(v) else rows[k].eq(v)).to_numpy(bool)
    acc = rows[mask]["accuracy"].to_numpy(float)
    low, high = _t_interval(acc, level)
    return {"grid_points": len(means), "grid_cells": int(means["size"].sum()),
            **{f"grid_{k}": v for k, v in zip(keys, top, strict=True)},
            "grid_accuracy": float(acc.mean()), "grid_ci_low": low, "grid_ci_high": high}
