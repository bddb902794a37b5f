"""Does the design's score predict which cell narrows v? Its ranking against measured drops, on synthetic truth.

    python -m bench.design_score [--draws 120]

From a base of cells (the paired start, 4 sizes × 2 seeds, and a third seed at those sizes; 3 arms, seeds shared
across arms and sizes: `bench/synthetic.py`), every free cell of seeds 0-3 is scored (a) by the design's score
(the sandwich variance of the least-squares fit, with a covariance block per seed) and (b) by the score a first
version used (cells independent: Fisher information Σ J Jᵀ/σ²). Each cell's measured drop: how much adding it
shrinks the (robust) spread of log(x + v) across `--draws` fresh draws of the same cells, in tolerance units.
Prints the Spearman correlation of each score with the measured drop, and the measured drop of each one's top
cell against the mean over all cells (a uniformly chosen one).
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import pandas as pd

import augworth.analysis.design as design_module
from augworth.analysis.design import Design, Target, next_cells
from augworth.analysis.design_arms import resolve_arms
from augworth.analysis.design_estimates import REFERENCE_ARM, fit_arms, jacobian, log_gradient
from bench.design import dense_grid, spread

TARGETS = (Target("crop", 100), Target("crop", 400), Target("trivial", 200))


def independent_scores(points, counted, free, open_targets, fits) -> dict[str, float]:
    """The first version's score: cells independent, with the pooled variance over seeds."""
    var = float(points.groupby(["arm", "data_size"])["accuracy"].var().mean())
    index = free.set_index("cell_key")
    out = {}
    for key in index.index:
        arm_k, size_k = index.loc[key, "arm"], float(index.loc[key, "data_size"])
        total = 0.0
        for t in open_targets.itertuples():
            if arm_k not in (t.treatment, REFERENCE_ARM):
                continue
            params = (fits.params[t.treatment], fits.params[REFERENCE_ARM])
            grad = np.concatenate(log_gradient(t.size, *params))

            def row(arm: str, size: float, t=t, params=params) -> np.ndarray:
                j, i = np.zeros(6), 0 if arm == t.treatment else 1
                j[3 * i:3 * i + 3] = jacobian(np.array([size]), params[i][0], params[i][2])[0]
                return j

            rows = np.array([row(a, float(s)) for a, s in zip(counted["arm"], counted["data_size"], strict=True)
                             if a in (t.treatment, REFERENCE_ARM)])
            info = rows.T @ rows / var + 1e-9 * np.eye(6)
            j = row(arm_k, size_k)
            total += grad @ np.linalg.pinv(info) @ grad - grad @ np.linalg.pinv(info + np.outer(j, j) / var) @ grad
        out[key] = total
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--draws", type=int, default=120)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    grid = dense_grid(0, "power", 6)
    cells = grid[["cell_key", "augmentation", "data_size", "seed"]]
    design = Design(targets=TARGETS, explore=0.0, check_top=0, min_seeds=2)
    base = next_cells(grid.iloc[:0], cells, design, n=24)
    base += grid.loc[grid["seed"].eq(2) & grid["data_size"].isin(grid.set_index("cell_key").loc[base, "data_size"]),
                     "cell_key"].tolist()
    free_keys = grid.loc[(grid["seed"] < 4) & ~grid["cell_key"].isin(base), "cell_key"].tolist()
    choosable = cells[cells["seed"] < 4]
    arms = resolve_arms(choosable, design)
    results = grid[grid["cell_key"].isin(base)]
    state = design_module._state(results, arms, design)
    points = design_module.design_points(results, arms, design)
    fits = fit_arms(points)
    labelled = choosable.assign(arm=arms.of(choosable))
    labelled = labelled[labelled["arm"].notna()]
    counted, free = labelled[labelled["cell_key"].isin(base)], labelled[labelled["cell_key"].isin(free_keys)]
    open_targets = state.targets[~state.targets["resolved"]]
    scored = design_module._linearised_scores(points, counted, free, open_targets, design, fits)
    sandwich = {design_module._cell(free, *cell): score for cell, score in scored.items()}
    before, *after = spread([base] + [[*base, key] for key in free_keys], args.draws, design, cells)
    measured = pd.Series(dict(zip(free_keys, before - np.array(after), strict=True)))
    frame = pd.DataFrame({"design (seed-aware sandwich)": pd.Series(sandwich),
                          "cells independent": pd.Series(independent_scores(points, counted, free, open_targets,
                                                                            fits)),
                          "measured": measured})
    print(f"{len(frame)} candidate cells, {args.draws} fresh draws each; Spearman with the measured drop:")
    for name in frame.columns[:2]:
        top = frame[name].idxmax()
        print(f"  {name}: {frame[name].corr(frame['measured'], method='spearman'):.2f}; its top cell {top} "
              f"measured {measured[top]:+.3f}")
    print(f"  a uniformly chosen cell: measured {measured.mean():+.3f} on average (tolerance units)")


if __name__ == "__main__":
    main()
