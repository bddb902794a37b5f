"""What an adaptive search found, per study: its best point as selected and as confirmed on fresh seeds, each
with an interval over seeds and its exchange rate against the grid's reference curve, and the best grid point at
the same size where a grid of the policy exists. `augworth best` and the report share it.

The trials come from the Optuna storage (`read_trials`, plain rows); the accuracies from the store's rows.
The best point is the trial with the highest mean over its seeds. Its own figure is a selected maximum: the t
interval over its seeds is valid for a point fixed in advance, not for the best of many (simulated with every
trial equal in truth, 50 trials x 5 seeds covered the truth in 0.79 of cases, `python -m bench.selection`). So
the orchestrator trains the best point again on fresh seeds (`search.confirm`), and the confirmation is the
answer: its mean and t interval, and its v, come from those cells only. v resamples whole seeds of the
reference curve (`point.py`); the selected point's seeds are the curve's and are drawn with them, the
confirmation's are fresh and are drawn on their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from augworth.results.schema import GROUP_COLUMNS

from .formatting import rate_text
from .intervals import warn_few_seeds
from .paired import final_rows
from .point import point_exchange
from .treatments import reference_mask

SEARCHED_FIELDS = ("strength", "lr", "momentum", "weight_decay")  # search_spaces.SEARCHABLE's cell fields
STATES = ("complete", "running", "pruned", "failed")
_STATE_NAMES = {"COMPLETE": "complete", "RUNNING": "running", "PRUNED": "pruned", "FAIL": "failed"}


def _storage(url: str) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if "://" in url:
        return optuna.storages.RDBStorage(url)
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(url))


def _summaries(storage: Any, sweep: str) -> list[Any]:
    import optuna

    return [s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)
            if s.study_name.startswith(f"{sweep}/")]


def read_confirmations(url: str, sweep: str) -> dict[str, dict[str, Any]]:
    """Per study of the sweep, what its confirmation trains (orchestrator/confirm.py): trial, seeds, cell_keys."""
    return {s.study_name: dict(s.user_attrs["confirm"]) for s in _summaries(_storage(url), sweep)
            if isinstance(s.user_attrs.get("confirm"), dict)}


def read_trials(url: str, sweep: str) -> pd.DataFrame:
    """Every trial of the sweep's studies (names '<sweep>/...') in the Optuna storage at `url` (a journal file
    or a database URL): study, number, state, value, params, cell_keys, pruned_at."""
    storage = _storage(url)
    rows = []
    for summary in _summaries(storage, sweep):
        for t in storage.get_all_trials(summary._study_id, deepcopy=False):
            rows.append({"study": summary.study_name, "number": t.number,
                         "state": _STATE_NAMES.get(t.state.name, t.state.name.lower()), "value": t.value,
                         "params": dict(t.params), "cell_keys": list(t.user_attrs.get("cell_keys", [])),
                         "pruned_at": t.user_attrs.get("pruned_at")})
    return pd.DataFrame(rows, columns=["study", "number", "state", "value", "params", "cell_keys", "pruned_at"])


def trial_counts(trials: pd.DataFrame, confirmations: dict[str, dict[str, Any]] | None = None,
                 done: set[str] | None = None) -> list[dict[str, Any]]:
    """Per study: trials complete, running, pruned, failed; with `confirmations` and the store's `done` keys,
    the trial its confirmation trains again and how many of its cells are in the store."""
    out = []
    for study, group in trials.groupby("study", sort=True):
        counts = group["state"].value_counts()
        row = {"study": study} | {s: int(counts.get(s, 0)) for s in STATES}
        record = (confirmations or {}).get(study)
        if record is not None and done is not None:
            row |= {"confirm_trial": int(record["trial"]), "confirm_cells": len(record["cell_keys"]),
                    "confirm_done": len(set(record["cell_keys"]) & done)}
        out.append(row)
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


def best_points(results: pd.DataFrame, trials: pd.DataFrame, *, objective: str = "test",
                confirm_eval_set: str | None = None, confirm_seeds: int = 0,
                confirmations: dict[str, dict[str, Any]] | None = None, reference: str = "none",
                grid: pd.DataFrame | None = None, level: float = 0.95, n_bootstrap: int = 1000,
                seed: int = 0) -> pd.DataFrame:
    """One row per study with a complete trial. `results`: the sweep's rows; `grid`: rows of other sweeps trained
    as grids. The reference curve and the grid's best come from the grid points of both.

    The best trial (highest value, lowest number among equals) is reported twice: as selected (accuracy and v on
    `objective` from the search's own cells: the maximum of the study's trials, optimistic) and as confirmed
    (columns confirm_*: from the cells that trained the point again on `confirm_seeds` fresh seeds, reported on
    `confirm_eval_set`, the objective's by default; `confirmations` is the studies' record of what they confirm,
    `read_confirmations`). confirm_state: "done", "pending" (cells not all in the store: no numbers), "off"."""
    confirm_eval_set = confirm_eval_set or objective
    all_rows = final_rows(results)
    searched = all_rows["search_study"].notna().to_numpy(bool) if "search_study" in all_rows.columns \
        else np.zeros(len(all_rows), bool)
    confirming = all_rows["search_confirm"].astype("boolean").fillna(False).to_numpy(bool) \
        if "search_confirm" in all_rows.columns else np.zeros(len(all_rows), bool)
    rows = all_rows[(all_rows["eval_set"] == objective).to_numpy(bool) & ~confirming]
    confirmed = all_rows[(all_rows["eval_set"] == confirm_eval_set).to_numpy(bool) & confirming]
    pool = all_rows[~searched] if grid is None else pd.concat([all_rows[~searched], final_rows(grid)],
                                                               ignore_index=True)
    if "search_study" in pool.columns:  # the grid points: this sweep's and the other grids'
        pool = pool[pool["search_study"].isna()]
    pool = pool.drop_duplicates(["cell_key", "eval_set"])
    references = pool[reference_mask(pool, reference)]
    own = set(all_rows["cell_key"])
    out = []
    for study, group in trials[trials["state"] == "complete"].groupby("study", sort=True):
        best = group.assign(value=group["value"].astype(float)).sort_values(
            ["value", "number"], ascending=[False, True]).iloc[0]
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
        row["ci_note"] = (f"selected: the best of {len(group)} trials on {objective!r}, so optimistic; its t interval "
                          "is not adjusted for the selection (the confirmation measures the point without it)")
        fields = [f for f in SEARCHED_FIELDS if f in best["params"]]
        # against the plain reference (as exchange_rates): the group's settings but the searched ones
        ref, note = _one_reference(_same_group(references[references["eval_set"] == objective], first, fields),
                                   fields, own)
        row |= _rate(ref, cells.set_index("seed")["accuracy"], x, note, paired=True, level=level,
                     n_bootstrap=n_bootstrap, seed=seed)
        mine = confirmed[(confirmed["search_study"] == study) & (confirmed["search_trial"] == best["number"])]
        record = (confirmations or {}).get(study, {})
        wanted = len(record["seeds"]) if record.get("trial") == best["number"] else confirm_seeds
        row |= {"confirm_state": "off" if not wanted else "done" if mine["seed"].nunique() >= wanted else "pending",
                "confirm_eval_set": confirm_eval_set, "confirm_seeds": int(mine["seed"].nunique()),
                "confirm_seeds_wanted": int(wanted), "confirm_same_eval_set": confirm_eval_set == objective}
        if row["confirm_state"] == "done":
            ref, note = _one_reference(_same_group(references[references["eval_set"] == confirm_eval_set], first,
                                                   fields), fields, own)
            values = mine.sort_values("seed")["accuracy"].to_numpy(float)
            c_low, c_high = _t_interval(values, level)
            row |= {"confirm_accuracy": float(values.mean()), "confirm_accuracy_ci_low": c_low,
                    "confirm_accuracy_ci_high": c_high}
            row |= {f"confirm_{k}": v for k, v in _rate(ref, mine.set_index("seed")["accuracy"], x, note,
                                                        paired=False, level=level, n_bootstrap=n_bootstrap,
                                                        seed=seed).items()}
        row["confirm_note"] = _confirm_note(row, objective)
        row |= _grid_best(pool[pool["eval_set"] == objective], first, x, level, fields)
        # cells trained: a trial that repeats an earlier point reuses its cells
        row["search_cells"] = len(set().union(*map(set, trials.loc[trials["study"] == study, "cell_keys"])))
        out.append(row)
    frame = pd.DataFrame(out)
    warn_few_seeds("best", frame.get("seeds", []), "selected v")
    if "confirm_state" in frame.columns:
        warn_few_seeds("best (confirmed)", frame.loc[frame["confirm_state"] == "done", "confirm_seeds"], "confirmed v")
    return frame


def _confirm_note(row: dict[str, Any], objective: str) -> str:
    if row["confirm_state"] == "off":
        return "not confirmed (search.confirm.seeds: 0): only the selected figure, optimistic"
    if row["confirm_state"] == "pending":
        return (f"confirmation pending: {row['confirm_seeds']} of {row['confirm_seeds_wanted']} fresh seeds in the "
                "store (`augworth resume`)")
    if row["confirm_same_eval_set"]:
        return (f"selected and confirmed on one eval set ({objective!r}): fresh seeds remove the selection's optimism "
                "over training randomness, not over that set's images (name another set in search.objective)")
    return f"selected on {objective!r}, confirmed on {row['confirm_eval_set']!r} with fresh seeds"


def _rate(ref: pd.DataFrame, point: pd.Series, x: float, note: str | None, **options: Any) -> dict[str, Any]:
    """v of `point` (accuracy by seed) against the reference curve `ref`, as numbers and as it reads."""
    if note is not None:
        d: dict[str, Any] = {"data_size": x, "fit_ok": False, "fit_reason": note}
    else:
        d = point_exchange(ref, point, x, **options)
    text = rate_text(d)
    return {"v": d.get("effective_extra_samples", np.nan), "v_ci_low": d.get("v_ci_low", np.nan),
            "v_ci_high": d.get("v_ci_high", np.nan), "ratio": d.get("exchange_ratio", np.nan),
            "unbounded": bool(d.get("unbounded", False)), "v_censored": bool(d.get("v_censored", False)),
            "v_bound_low": d.get("v_bound_low", np.nan), "v_text": text.v, "v_ci_text": text.ci,
            "ratio_text": text.ratio, "v_note": text.note}


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
            "grid_note": f"the best of {len(means)} grid points: selected too, so optimistic",
            **{f"grid_{k}": v for k, v in zip(keys, top, strict=True)},
            "grid_accuracy": float(acc.mean()), "grid_ci_low": low, "grid_ci_high": high}
