"""Adaptive search against a dense grid: the cells a search trains to come within 0.5 accuracy points of the grid's
best, divided by the grid's cells, side by side from the same cells.

    python -m bench.search [--store DIR] [--sampler-seeds 10]    # trains the grid first where DIR lacks it
    python -m bench.search --smoke                              # a synthetic table: seconds, for the tests
    python -m bench.search --coverage 200                       # how often `best`'s intervals hold the truth

The grid: crop's strength (0..7 pixels of zero padding, digits at 16x16) x 6 learning rates (0.01..0.3,
log-spaced) x 3 seeds, at 100 and 400 images; small_cnn width 16, 300 steps of 64, evaluated on the test
split at the last step. That is 144 cells per size.

The search is augworth's own: the spec's search block (strength 0..7, whole numbers; lr 0.01..0.3 log) turned
into Optuna distributions and samplers by orchestrator/search.py, one study per size, every trial at the 3
seeds. Its learning rate is snapped to the nearest grid value, so each trial's cells are grid cells (the same
resolved config, the same key: training is deterministic on a CPU) and their accuracies are looked up, not
trained again: a tabular benchmark, exact for a search restricted to the grid's values. A trial that repeats
an earlier point costs nothing, as in augworth (its cells are in the store). The target is the grid's best
mean over seeds at that size, minus 0.005; the grid's best is itself a max over 48 noisy means.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

LRS = [float(round(v, 6)) for v in np.geomspace(0.01, 0.3, 6)]
STRENGTHS = list(range(8))
SIZES = [100, 400]
SEEDS = [0, 1, 2]
SAMPLERS = ("tpe", "gp", "random")
TOLERANCE = 0.005  # --tolerance
MAX_TRIALS = 200

GRID_SPEC = """\
name: bench-search-lr{i}
dataset: {{name: digits}}
model: {{name: small_cnn, width: 16}}
augmentations: [{{policy: crop, strength: {strengths}}}]
data_sizes: {sizes}
seeds: {seeds}
budget: {{steps: 300, batch_size: 64}}
optimizer: {{lr: {lr!r}, warmup_steps: 30}}
eval_sets: [test]
"""
SEARCH_SPEC = """\
name: bench-search
dataset: {name: digits}
model: {name: small_cnn, width: 16}
augmentations: [{policy: none}, {policy: crop}]
data_sizes: [100, 400]
seeds: [0, 1, 2]
eval_sets: [test]
search:
  params: {strength: {low: 0, high: 7}, lr: {low: 0.01, high: 0.3, log: true}}
  trials: 48
"""


def grid_table(store: str) -> dict[tuple[int, int, float], float]:
    """(size, strength, lr) -> mean final test accuracy over the seeds, training the grid where it is missing."""
    from augworth.results import Store, read_results

    table: dict[tuple[int, int, float], float] = {}
    for i, lr in enumerate(LRS):
        name = f"bench-search-lr{i}"
        spec = Path(store) / f"{name}.yaml"
        spec.parent.mkdir(parents=True, exist_ok=True)
        spec.write_text(GRID_SPEC.format(i=i, lr=lr, strengths=STRENGTHS, sizes=SIZES, seeds=SEEDS))
        subprocess.run([sys.executable, "-m", "augworth.orchestrator.cli", "run", str(spec), "--store", store,
                        "--no-progress"], check=True)
        rows = read_results(Store(store), name, final_only=True)
        means = rows[rows["eval_set"] == "test"].groupby(["data_size", "strength"])["accuracy"].agg(["mean", "size"])
        assert (means["size"] == len(SEEDS)).all(), f"{name}: a grid point lacks seeds"
        for (size, strength), mean in means["mean"].items():
            table[(int(size), int(strength), lr)] = float(mean)
    return table


def synthetic_table() -> dict[tuple[int, int, float], float]:
    """A smooth made-up surface with its best at strength 2, lr 0.1 (for --smoke)."""
    return {(size, s, lr): 0.9 - 0.01 * (s - 2) ** 2 - 0.05 * math.log(lr / 0.1) ** 2 - 10 / size
            for size in SIZES for s in STRENGTHS for lr in LRS}


def cells_to_target(table: dict, size: int, sampler: str, seed: int, tolerance: float = TOLERANCE
                    ) -> tuple[int, bool]:
    """Cells trained until a trial's point is within TOLERANCE of the grid's best at `size` (and whether it got
    there within MAX_TRIALS trials)."""
    import optuna

    from augworth.orchestrator.search import distributions, make_sampler, sampler_seed
    from augworth.search_spaces import parse_spec

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    spec = parse_spec(SEARCH_SPEC)
    space = distributions(spec, "crop")
    name = f"bench-search/crop/n{size}"
    study = optuna.create_study(direction="maximize", sampler=make_sampler(sampler, sampler_seed(seed, name, 0)))
    target = max(v for (n, _, _), v in table.items() if n == size) - tolerance
    seen: set[tuple[int, float]] = set()
    for _ in range(MAX_TRIALS):
        trial = study.ask(space)
        lr = min(LRS, key=lambda v: abs(math.log(v / trial.params["lr"])))
        point = (int(trial.params["strength"]), lr)
        seen.add(point)
        value = table[(size, *point)]
        study.tell(trial, value)
        if value >= target:
            return len(seen) * len(SEEDS), True
    return len(seen) * len(SEEDS), False


def coverage(n: int, n_bootstrap: int = 400) -> dict:
    """How often `best`'s intervals hold the truth on `n` synthetic sweeps (bench/synthetic.py: 10 seeds shared
    by the searched point and the reference curve): v at x = 200, and the point's mean accuracy."""
    import warnings

    from augworth.analysis.search import best_points
    from bench.synthetic import AUG, SEARCHED_SIZE, searched_sweeps, true_v

    results, trials = searched_sweeps(n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        best = best_points(results, trials, n_bootstrap=n_bootstrap)
    truth_v = float(true_v(np.array([SEARCHED_SIZE]))[0])
    a, b, c = AUG
    truth_acc = 1 - (a * SEARCHED_SIZE ** -c + b)
    row = {"sweeps": n, "v_held": float(((best["v_ci_low"] <= truth_v) & (truth_v <= best["v_ci_high"])).mean()),
           "accuracy_held": float(((best["accuracy_ci_low"] <= truth_acc)
                                   & (truth_acc <= best["accuracy_ci_high"])).mean()),
           "true_v": truth_v, "median_v": float(best["v"].median())}
    print(f"{n} synthetic sweeps: v's 95% interval held the true v ({truth_v:.0f}) in {row['v_held']:.3f}, the "
          f"accuracy's t interval held the true mean in {row['accuracy_held']:.3f}; median v {row['median_v']:.0f}")
    return row


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=None, help="where the grid's sweeps are (trained there if missing)")
    parser.add_argument("--sampler-seeds", type=int, default=10)
    parser.add_argument("--tolerance", type=float, default=TOLERANCE, help="accuracy below the grid's best that counts")
    parser.add_argument("--smoke", action="store_true", help="a synthetic table and 2 sampler seeds")
    parser.add_argument("--coverage", type=int, default=0, help="only: `best`'s intervals on N synthetic sweeps")
    args = parser.parse_args(argv)
    if args.coverage:
        return [coverage(args.coverage)]
    if args.smoke:
        table, seeds = synthetic_table(), 2
    else:
        table, seeds = grid_table(args.store or tempfile.mkdtemp(prefix="bench-search-")), args.sampler_seeds
    grid_cells = len(STRENGTHS) * len(LRS) * len(SEEDS)
    rows = []
    for sampler in SAMPLERS:
        for size in SIZES:
            runs = [cells_to_target(table, size, sampler, s, args.tolerance) for s in range(seeds)]
            cells = np.array([c for c, _ in runs], dtype=float)
            rows.append({"sampler": sampler, "size": size, "ratio": float(cells.mean() / grid_cells),
                         "worst": float(cells.max() / grid_cells), "found": sum(ok for _, ok in runs),
                         "seeds": seeds})
    print(f"grid: {grid_cells} cells per size ({len(STRENGTHS)} strengths x {len(LRS)} lr x {len(SEEDS)} seeds); "
          f"target: within {args.tolerance * 100:g} points of the grid's best")
    for size in SIZES:
        (_, strength, lr), top = max(((k, v) for k, v in table.items() if k[0] == size), key=lambda kv: kv[1])
        near = sum(table[(size, s, r)] >= top - args.tolerance for s in STRENGTHS for r in LRS)
        print(f"  n={size}: best {top:.4f} at strength {strength}, lr {lr:g}; {near} of "
              f"{len(STRENGTHS) * len(LRS)} grid points within the target")
    print(f"{'sampler':8} {'size':>5} {'ratio (cells / grid cells)':>27} {'worst':>6} {'found':>6}")
    for r in rows:
        print(f"{r['sampler']:8} {r['size']:>5} {r['ratio']:>27.3f} {r['worst']:>6.3f} {r['found']:>3}/{r['seeds']}")
    for sampler in SAMPLERS:
        mean = np.mean([r["ratio"] for r in rows if r["sampler"] == sampler])
        print(f"{sampler}: mean ratio over sizes {mean:.3f}")
    return rows


if __name__ == "__main__":
    main()
