"""The design against a uniform grid and random picks, replayed on a dense grid of real cells (digits).

    augworth run bench/digits_dense.yaml --store /tmp/dense     # once: 720 cells, ~12 min on 2 cores
    python -m bench.design_digits --export /tmp/dense           # its final test rows -> bench/data/digits_dense.parquet
    python -m bench.design_digits [--orderings 50] [--tolerance 0.15] [--workers 4] [--store /tmp/dense]
    python -m bench.design_digits --first 25 --orderings 25 --out b.csv     # a share, in its own process ...
    python -m bench.design_digits --summarize a.csv b.csv                   # ... and the shares together

The grid (`bench/digits_dense.yaml`): the reference (none), crop(2) and TrivialAugment × 10 sizes (25 to 1,160) ×
24 seeds of small_cnn on digits, 300 SGD steps each, every cell's measured training seconds stored. Per ordering
the 24 seeds are split at random: 12 that the policies may query (relabelled 0-11 in a random order, so "the
lowest seed" differs between orderings), 12 held out. The reference answer is x + v at each target fitted on the
held-out seeds alone (every size), which no policy sees. A policy is charged each cell's measured seconds; each
step it picks `--workers` cells and the design's own check (`design_state`) stops every policy alike, or the
12 seeds run out (policy `all`, not run by default: every visible cell, no stopping). Reported per policy: the
cells and training seconds spent (runs that end unresolved count at what they spent: every cell), the share
resolved, the error of log(x + v) against the reference answer, and how often the final 95% interval held it.
The reference answer has its own noise (12 seeds, its half-width printed beside), so a calibrated interval holds
it less often than 0.95: `consistent` is the share of targets where the
two estimates differ by less than their combined 95% interval (log scale, each interval's half-width over 1.96
its standard error), which two calibrated, independent intervals pass 0.95 of the time.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from augworth.analysis.design import Design, Target, design_points
from augworth.analysis.design_arms import resolve_arms
from augworth.analysis.design_estimates import fit_arms, target_intervals
from bench.design import replay

EXPORT = Path(__file__).parent / "data" / "digits_dense.parquet"
SWEEP = "digits-dense"
COLUMNS = ["cell_key", "augmentation", "strength", "data_size", "seed", "accuracy", "train_seconds"]


def read_grid(store: str | None) -> pd.DataFrame:
    """The dense grid's final test rows: from a store the spec was run into, or the exported file."""
    if store is None:
        return pd.read_parquet(EXPORT)
    from augworth.results import Store, read_results

    rows = read_results(Store(store), SWEEP, final_only=True)
    return rows.loc[rows["eval_set"] == "test", COLUMNS].sort_values(COLUMNS[1:5], ignore_index=True)


def split(grid: pd.DataFrame, ordering: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The cells the policies may query (seeds relabelled 0..11 in a random order) and the held-out ones."""
    rng = np.random.default_rng(ordering)
    seeds = rng.permutation(np.sort(grid["seed"].unique()))
    half = len(seeds) // 2
    visible = grid[grid["seed"].isin(seeds[:half])]
    visible = visible.assign(seed=visible["seed"].map({s: i for i, s in enumerate(seeds[:half])}))
    return visible.assign(final=True, eval_set="test").reset_index(drop=True), grid[grid["seed"].isin(seeds[half:])]


def reference_answer(held: pd.DataFrame, design: Design) -> pd.DataFrame:
    """x + v at each target from the held-out seeds' fits, with their own seed-bootstrap interval."""
    arms = resolve_arms(held, design)
    points = design_points(held.assign(final=True, eval_set="test"), arms, design)
    return target_intervals(points, arms.targets, fit_arms(points), level=0.95, n_bootstrap=400, seed=0)


def main(argv: list[str] | None = None) -> pd.DataFrame | None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orderings", type=int, default=50)
    parser.add_argument("--tolerance", type=float, default=0.15)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--targets", default="trivialaugment:40,trivialaugment:60,crop:140",
                        help="treatment:size,... (the augmentation names one treatment of the grid)")
    parser.add_argument("--store", help="read the grid from this store (else bench/data/digits_dense.parquet)")
    parser.add_argument("--export", metavar="STORE", help="write the store's grid to bench/data and stop")
    parser.add_argument("--policies", default="uniform,random,design")
    parser.add_argument("--first", type=int, default=0, help="the first ordering (to split a run over processes)")
    parser.add_argument("--out", help="also write the per-ordering rows to this CSV")
    parser.add_argument("--summarize", nargs="+", metavar="CSV", help="summarize earlier --out files and stop")
    args = parser.parse_args(argv)
    if args.export:
        EXPORT.parent.mkdir(exist_ok=True)
        read_grid(args.export).to_parquet(EXPORT, index=False)
        print(f"wrote {EXPORT}")
        return None
    warnings.simplefilter("ignore")
    grid = read_grid(args.store)
    targets = tuple(Target(name, float(size)) for name, size in (t.split(":") for t in args.targets.split(",")))
    design = Design(targets=targets, tolerance=args.tolerance, budget_cells=grid["cell_key"].nunique() // 2,
                    n_bootstrap=200)
    if args.summarize:
        summarize(pd.concat([pd.read_csv(f) for f in args.summarize], ignore_index=True), grid, design, args)
        return None
    rows = []
    start = time.time()
    for ordering in range(args.first, args.first + args.orderings):
        visible, held = split(grid, ordering)
        answer = reference_answer(held, design)
        cost = visible.set_index("cell_key")["train_seconds"]
        for policy in args.policies.split(","):
            out = every_cell(visible, design) if policy == "all" else replay(visible, design, policy,
                                                                               workers=args.workers, ordering=ordering)
            t = out["targets"]
            true = answer["x_equiv"].to_numpy(float)
            rows.append({"policy": policy, "ordering": ordering, "cells": out["cells"],
                         "seconds": float(cost[out["done"]].sum()), "resolved": out["stop"] == "resolved",
                         "log_error": float(np.nanmean(np.abs(np.log(t["x_equiv"].to_numpy(float)) - np.log(true)))),
                         "covered": float(np.mean((t["low"] <= true) & (true <= t["high"]))),
                         "consistent": consistent(t, answer),
                         "answer_half_width": float(np.mean((answer["high"] - answer["low"]) / 2 / answer["x_equiv"]))})
        print(f"ordering {ordering + 1 - args.first}/{args.orderings} ({time.time() - start:.0f} s)", flush=True)
    frame = pd.DataFrame(rows)
    if args.out:
        frame.to_csv(args.out, index=False)
    summarize(frame, grid, design, args)
    return frame


def every_cell(visible: pd.DataFrame, design: Design) -> dict:
    """Policy `all`: every visible cell, no stopping (what 12 seeds of the whole grid say)."""
    from augworth.analysis.design import design_state

    state = design_state(visible, visible, design)
    return {"cells": len(visible), "done": visible["cell_key"].tolist(), "stop": state.stop, "targets": state.targets}


def consistent(estimate: pd.DataFrame, answer: pd.DataFrame) -> float:
    """The share of targets whose estimate and reference answer differ by less than their combined 95% interval."""
    def se(table: pd.DataFrame) -> np.ndarray:
        return (np.log(table["high"].to_numpy(float)) - np.log(table["low"].to_numpy(float))) / (2 * 1.96)

    diff = np.abs(np.log(estimate["x_equiv"].to_numpy(float)) - np.log(answer["x_equiv"].to_numpy(float)))
    return float(np.mean(diff <= 1.96 * np.sqrt(se(estimate) ** 2 + se(answer) ** 2)))


def summarize(frame: pd.DataFrame, grid: pd.DataFrame, design: Design, args: argparse.Namespace) -> None:
    budget = design.budget_cells
    summary = frame.groupby("policy").agg(cells_mean=("cells", "mean"), cells_median=("cells", "median"),
                                          seconds_mean=("seconds", "mean"), resolved=("resolved", "mean"),
                                          log_error=("log_error", "mean"), coverage=("covered", "mean"),
                                          consistent=("consistent", "mean"))
    base = summary.loc["uniform", "seconds_mean"] if "uniform" in summary.index else np.nan
    summary["seconds_vs_uniform"] = summary["seconds_mean"] / base
    answer = reference_answer(grid, design)
    print(f"digits grid: {len(grid)} cells, tolerance ±{args.tolerance:.0%}, {frame['ordering'].nunique()} orderings, "
          f"{args.workers} cells a step, budget {budget} cells (every visible one); reference answer's relative "
          f"half-width {frame['answer_half_width'].mean():.3f}; all 24 seeds' x + v: "
          + ", ".join(f"{r.arm} at {r.size:g}: {r.x_equiv:,.0f} [{r.low:,.0f}, {r.high:,.0f}]"
                      for r in answer.itertuples()))
    print(summary.round(3).to_string())


if __name__ == "__main__":
    main()
