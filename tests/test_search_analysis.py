"""`analysis.search.best_points` against synthetic sweeps with a known truth (seeds shared by the searched point
and the reference curve, as in a real sweep), and the grid's best beside it."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from analysis.search import best_points
from bench.synthetic import AUG, searched_sweeps, true_v
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
    assert np.isnan(best["v"]) and best["v_note"] == "no reference curve"
