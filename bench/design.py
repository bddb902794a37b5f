"""The design mode against a uniform grid and random picks, replayed on dense grids of finished cells.

    python -m bench.design [--orderings 50] [--truth power|two_power] [--tolerance 0.15] [--workers 4]

A dense grid (the reference and two treatments × 8 log-spaced sizes × 24 seeds) is drawn once per ordering from
a synthetic truth with seeds shared across treatments and sizes (`bench/synthetic.py`; `--truth two_power`: a
reference outside the power-law family, the sum of two power laws). A policy may only query the grid's cells
and is charged their cost (fixed steps: one unit a cell). Each step a policy picks `--workers` cells; after
each step the design's own check (`design_state`) says whether every target is resolved, for every policy
alike. Reported per policy over the orderings: the cells spent to resolve every target (median and mean;
runs that hit the budget count at the budget), the share that resolved, the error of log(x + v) against the
truth, and how often the final 95% interval held the true x + v.

Policies: `uniform` (round-robin: one seed at a time, every size, every arm paired), `random` (the grid's
cells in a random order), `design` (`analysis.design.next_cells`).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd

from augworth.analysis.design import Design, Target, design_state, next_cells
from bench.synthetic import REF, Curve, synthetic_sweeps, true_v, two_power_laws

SIZES = tuple(int(s) for s in np.geomspace(50, 3200, 8))
AUG2 = (1.2, 0.045, 0.55)  # a second treatment: the design must spend on it too
TWO_POWER = two_power_laws(1.8, 0.5, 0.35, 0.08)


def worth(ref: Curve, ratio: float) -> Curve:
    """A treatment exactly worth `ratio` × the data under `ref`: its error at x is the reference's at ratio·x."""
    return Curve(lambda x: ref.reducible(ratio * np.asarray(x, dtype=float)), ref.floor)


# per truth: the reference and the treatments (crop, trivial). "two_power": a reference with no asymptote and
# power-law treatments, whose targets' x + v lie 10-30 x past the largest size; "two_power_near": the same
# reference, treatments worth 2.5 x and 4 x the data (outside the power-law family too), targets inside the sizes
TRUTHS: dict[str, tuple] = {
    "power": (REF, {"crop": (1.5, 0.04, 0.50), "trivial": AUG2}),
    "two_power": (TWO_POWER, {"crop": (1.5, 0.04, 0.50), "trivial": AUG2}),
    "two_power_near": (TWO_POWER, {"crop": worth(TWO_POWER, 2.5), "trivial": worth(TWO_POWER, 4.0)}),
}


def dense_grid(ordering: int, truth: str, seeds: int) -> pd.DataFrame:
    ref, arms = TRUTHS[truth]
    frame = synthetic_sweeps(1, seeds=seeds, shared=0.1, own=0.05, sizes=SIZES, rng_seed=1000 + ordering,
                             ref=ref, aug=arms["crop"], more={"trivial": arms["trivial"]})
    frame["cell_key"] = frame["augmentation"] + "-" + frame["data_size"].astype(str) + "-" + frame["seed"].astype(str)
    return frame.assign(train_seconds=1.0, final=True)


def spread(cell_sets: list[list[str]], realizations: int, design: Design, grid_cells: pd.DataFrame) -> np.ndarray:
    """Per set of cells: Σ over targets of the variance of log(x + v) across fresh synthetic realizations of those
    cells (a robust one: a fit at a bound makes a far outlier), in units of the tolerance: what the design's score
    predicts the drop of. Every (set, realization, arm) fit in one batch."""
    from augworth.analysis.design_arms import resolve_arms
    from augworth.analysis.design_estimates import REFERENCE_ARM
    from augworth.analysis.fit import fit_batch, inverse_power_law, power_law

    arms = resolve_arms(grid_cells, design)
    names = sorted({arm for arm, _ in arms.targets} | {REFERENCE_ARM})
    draws = [dense_grid(100 + r, "power", 6) for r in range(realizations)]
    labelled = draws[0].assign(arm=arms.of(draws[0]))
    arm_of, size_of = labelled.set_index("cell_key")["arm"], labelled.set_index("cell_key")["data_size"]
    n_max = max(sum(arm_of[k] == name for k in cells) for cells in cell_sets for name in names)
    shape = (len(cell_sets), realizations, len(names), n_max)
    sizes, errors, weights = np.ones(shape), np.zeros(shape), np.zeros(shape)
    for r, draw in enumerate(draws):
        accuracy = draw.set_index("cell_key")["accuracy"]
        for s, cells in enumerate(cell_sets):
            for a, name in enumerate(names):
                mine = [k for k in cells if arm_of[k] == name]
                sizes[s, r, a, :len(mine)] = size_of[mine].to_numpy(float)
                errors[s, r, a, :len(mine)] = 1.0 - accuracy[mine].to_numpy(float)
                weights[s, r, a, :len(mine)] = 1.0
    fitted = fit_batch(sizes.reshape(-1, n_max), errors.reshape(-1, n_max), weights.reshape(-1, n_max))
    a, b, c = (p.reshape(shape[:3]) for p in fitted[:3])
    ref = names.index(REFERENCE_ARM)

    def log_x_equiv(arm: str, x: float) -> np.ndarray:
        i = names.index(arm)
        return np.log(inverse_power_law(power_law(x, a[..., i], b[..., i], c[..., i]), a[..., ref], b[..., ref],
                                        c[..., ref]))

    logs = np.stack([log_x_equiv(arm, x) for arm, x in arms.targets], axis=-1)  # (sets, realizations, targets)
    q75, q25 = np.nanpercentile(logs, [75, 25], axis=1)
    return np.sum(((q75 - q25) / 1.349) ** 2 / np.log1p(design.tolerance) ** 2, axis=1)


def uniform_order(grid: pd.DataFrame, rng: np.random.Generator) -> list[str]:
    seeds = rng.permutation(np.sort(grid["seed"].unique()))
    rank = {s: i for i, s in enumerate(seeds)}
    return grid.assign(_r=grid["seed"].map(rank)).sort_values(["_r", "data_size", "augmentation"])["cell_key"].tolist()


def replay(grid: pd.DataFrame, design: Design, policy: str, *, workers: int, ordering: int) -> dict:
    cells = grid[["cell_key", "augmentation", "data_size", "seed"]]
    rng = np.random.default_rng(ordering)
    order = uniform_order(cells, rng) if policy == "uniform" else list(rng.permutation(cells["cell_key"].to_numpy()))
    done: list[str] = []
    design = Design(**{**design.__dict__, "seed": ordering})
    while True:
        results = grid[grid["cell_key"].isin(done)]
        results = results.assign(created_at=results["cell_key"].map({k: i for i, k in enumerate(done)}))
        if policy == "design":
            picks = next_cells(results, cells, design, n=workers)
        else:
            state = design_state(results, cells, design) if done else None
            picks = [] if state is not None and state.stop else [k for k in order if k not in set(done)][:workers]
        if not picks:
            break
        done += picks
    results = grid[grid["cell_key"].isin(done)]
    state = design_state(results.assign(created_at=results["cell_key"].map({k: i for i, k in enumerate(done)})),
                         cells, design)
    return {"cells": len(done), "done": done, "stop": state.stop, "targets": state.targets}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orderings", type=int, default=50)
    parser.add_argument("--truth", choices=sorted(TRUTHS), default="power")
    parser.add_argument("--tolerance", type=float, default=0.15)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=24)
    parser.add_argument("--budget", type=int, default=400)
    parser.add_argument("--policies", default="uniform,random,design")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    targets = (Target("crop", 100), Target("crop", 400), Target("trivial", 200))
    design = Design(targets=targets, tolerance=args.tolerance, budget_cells=args.budget, n_bootstrap=200)
    ref, arms = TRUTHS[args.truth]
    truth = {(t.treatment, float(t.size)): float(t.size + true_v(np.array([float(t.size)]), ref=ref,
                                                                  aug=arms[t.treatment])[0]) for t in targets}
    rows = []
    start = time.time()
    for ordering in range(args.orderings):
        grid = dense_grid(ordering, args.truth, args.seeds)
        for policy in args.policies.split(","):
            out = replay(grid, design, policy, workers=args.workers, ordering=ordering)
            t = out["targets"]
            true = np.array([truth[(a, s)] for a, s in zip(t["treatment"], t["size"], strict=True)])
            rows.append({"policy": policy, "ordering": ordering, "cells": out["cells"],
                         "resolved": out["stop"] == "resolved",
                         "log_error": float(np.nanmean(np.abs(np.log(t["x_equiv"].to_numpy(float)) - np.log(true)))),
                         "covered": float(np.mean((t["low"] <= true) & (true <= t["high"])))})
        print(f"ordering {ordering + 1}/{args.orderings} ({time.time() - start:.0f} s)", flush=True)
    frame = pd.DataFrame(rows)
    summary = frame.groupby("policy").agg(cells_median=("cells", "median"), cells_mean=("cells", "mean"),
                                          resolved=("resolved", "mean"), log_error=("log_error", "mean"),
                                          coverage=("covered", "mean"))
    base = summary.loc["uniform", "cells_mean"] if "uniform" in summary.index else np.nan
    summary["cost_vs_uniform"] = summary["cells_mean"] / base
    print(f"truth {args.truth}, tolerance ±{args.tolerance:.0%}, {args.orderings} orderings, {args.workers} cells a "
          f"step, budget {args.budget} cells, targets {[(t.treatment, t.size) for t in targets]}")
    print(summary.round(3).to_string())


if __name__ == "__main__":
    main()
