"""`analysis.search.best_points` against synthetic sweeps with a known truth (seeds shared by the searched point
and the reference curve, as in a real sweep), the best of many trials selected and then confirmed on fresh
seeds, and the grid's best beside it."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from augworth.analysis.search import best_points
from bench.synthetic import AUG, searched_sweeps, selected_sweeps, true_v
from bench.synthetic import SEARCHED_SIZE as X


def test_the_best_points_exchange_rate_interval_holds_the_truth():
    results, trials = searched_sweeps(40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        best = best_points(results, trials, n_bootstrap=300)
    assert len(best) == 40 and (best["seeds"] == 10).all() and (best["data_size"] == X).all()
    truth_v = float(true_v(np.array([X]))[0])
    held_v = ((best["v_ci_low"] <= truth_v) & (truth_v <= best["v_ci_high"])).mean()
    a, b, c = AUG
    truth_acc = 1 - (a * X ** -c + b)
    held_acc = ((best["accuracy_ci_low"] <= truth_acc) & (truth_acc <= best["accuracy_ci_high"])).mean()
    assert held_v >= 0.85 and held_acc >= 0.85, (held_v, held_acc)  # nominal 0.95
    assert np.median(np.abs(best["v"] - truth_v)) < 0.25 * truth_v
    assert np.allclose(best["ratio"], (X + best["v"]) / X)


def test_the_grids_best_at_the_same_size_sits_beside_it():
    results, trials = searched_sweeps(1)
    grid = pd.DataFrame([{"augmentation": "crop", "strength": s, "data_size": X, "seed": seed, "eval_set": "test",
                          "accuracy": acc + 0.001 * seed, "width": 0, "subset": "nested", "cell_key": f"g{s}{seed}"}
                         for s, acc in ((1.0, 0.80), (2.0, 0.86), (3.0, 0.83)) for seed in range(3)])
    best = best_points(results, trials, grid=grid, n_bootstrap=50).iloc[0]
    assert best["grid_points"] == 3 and best["grid_cells"] == 9 and best["grid_strength"] == 2.0
    assert best["grid_accuracy"] == pytest.approx(0.861)
    assert best["grid_ci_low"] < best["grid_accuracy"] < best["grid_ci_high"] <= 1.0
    assert best["search_cells"] == 10  # the trial's cells, one per seed


def test_without_a_reference_curve_v_is_not_invented():
    results, trials = searched_sweeps(1)
    results = results[results["augmentation"] == "crop"]
    best = best_points(results, trials, n_bootstrap=50).iloc[0]
    assert np.isnan(best["v"]) and best["v_note"].startswith("no fit: no reference curve")


def _best(results, trials, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return best_points(results, trials, **options)


def test_the_confirmation_holds_the_truth_where_the_selected_best_of_50_trials_does_not():
    """Every trial the same point in truth, seed effects shared by the trials and the reference curve: the best of
    50 is optimistic and its intervals miss; the same point on 5 fresh seeds is neither."""
    results, trials = selected_sweeps(60, trials=50, rng_seed=5)
    best = _best(results, trials, confirm_seeds=5, n_bootstrap=200)
    assert (best["confirm_state"] == "done").all() and (best["confirm_seeds"] == 5).all()
    a, b, c = AUG
    truth_acc, truth_v = 1 - (a * X ** -c + b), float(true_v(np.array([X]))[0])

    def held(prefix, low="accuracy_ci_low", high="accuracy_ci_high", truth=truth_acc):
        return ((best[prefix + low] <= truth) & (truth <= best[prefix + high])).mean()

    assert held("confirm_") >= 0.88 and held("confirm_", "v_ci_low", "v_ci_high", truth_v) >= 0.85
    assert held("") < held("confirm_") and held("", "v_ci_low", "v_ci_high", truth_v) < 0.75
    assert (best["accuracy"] - truth_acc).mean() > 0.004  # the winner's curse
    assert abs((best["confirm_accuracy"] - truth_acc).mean()) < 0.002
    confirmed = results[results["search_confirm"].eq(True)]
    for row in best.head(3).itertuples():  # the confirmation's numbers are its own cells' only
        mine = confirmed[confirmed["search_study"] == row.study]["accuracy"]
        assert row.confirm_accuracy == pytest.approx(mine.mean()) and row.confirm_seeds == len(mine)
    assert best["confirm_note"].str.startswith("selected and confirmed on one eval set ('test')").all()


def test_a_confirmation_not_all_in_the_store_gives_no_numbers_and_none_wanted_says_off():
    results, trials = selected_sweeps(2, trials=3, rng_seed=1)
    confirm = results["search_confirm"].eq(True)
    partial = results[~(confirm & (results["seed"] == 9))]
    best = _best(partial, trials, confirm_seeds=5, n_bootstrap=50)
    assert list(best["confirm_state"]) == ["pending"] * 2 and (best["confirm_seeds"] == 4).all()
    assert "confirm_accuracy" not in best.columns and best["confirm_note"].str.contains("4 of 5").all()
    # the study's record of its confirmation outranks the spec's count (a sweep frozen with another)
    record = {study: {"trial": int(n), "seeds": [5, 6, 7, 8], "cell_keys": []}
              for study, n in _best(results, trials, n_bootstrap=50)[["study", "best_trial"]].itertuples(index=False)}
    assert (_best(partial, trials, confirm_seeds=5, confirmations=record, n_bootstrap=50)["confirm_state"]
            == "done").all()
    off = _best(results[~confirm], trials, confirm_seeds=0, n_bootstrap=50)
    assert list(off["confirm_state"]) == ["off"] * 2 and off["confirm_note"].str.startswith("not confirmed").all()


def test_selected_on_one_eval_set_and_confirmed_on_another():
    results, trials = selected_sweeps(2, trials=3, rng_seed=2)
    held_out = results.assign(eval_set="held_out", accuracy=results["accuracy"] - 0.05)
    best = _best(pd.concat([results, held_out], ignore_index=True), trials, objective="test",
                 confirm_eval_set="held_out", confirm_seeds=5, n_bootstrap=50)
    mine = held_out[held_out["search_confirm"].eq(True) & (held_out["search_study"] == best["study"].iloc[0])]
    assert best["confirm_accuracy"].iloc[0] == pytest.approx(mine["accuracy"].mean())
    assert not best["confirm_same_eval_set"].any()
    assert best["confirm_note"].iloc[0] == "selected on 'test', confirmed on 'held_out' with fresh seeds"


def test_the_best_trial_is_the_highest_value_and_the_lowest_number_among_equals():
    results, trials = selected_sweeps(1, trials=3, rng_seed=3)
    trials["value"] = [0.5, 0.9, 0.9]
    assert _best(results, trials, n_bootstrap=50)["best_trial"].iloc[0] == 1
