"""The results store before and after `compact`: a DuckDB filter query and the exchange-rate fits.

    python -m bench.store [--cells 2000] [--rows 500] [--repeats 3] [--smoke]

Builds a synthetic sweep of N cells × R rows (5 eval sets × R/5 evaluation steps; 10 treatments, 8 data
sizes, 5 seeds, then widths; final accuracies on power laws, so the fits succeed) in a temp folder, through
`Store.write_cell`, one Parquet file per cell as a sweep leaves them. Times each of these, best of
--repeats, before and after `Store.compact`:

  query       `connect(store, sweep)` + SELECT augmentation, data_size, avg(accuracy) ... WHERE final AND
              eval_set = 'test' GROUP BY ALL (listing the files and making the view included)
  load final  `read_results(store, sweep, columns=<what the fits need>, final_only=True)`
  fits        `analysis.exchange_rates(<those rows>)` (no bootstrap)
  load + fits the two together, as one would run them
  load all    `read_results(store, sweep)`: every row and column (what `augworth analyze` reads today)
  done keys   `Store.done_keys(sweep)`: what `run`/`resume` subtract (each cell file's footer is read, so a
              file named after one cell but holding another's is not counted)

And `Store.write_cell` per cell for up to 200 cells, with the fsyncs of each write (file, then folder) and
without them (`results.files.FSYNC`).

Baseline (the ratios' denominator): reading everything with pandas over the per-cell files,
`pd.concat(pd.read_parquet(f) for f in files)`; `pd.read_parquet(folder)` is shown too. A ratio is
baseline seconds / seconds (how many times faster), measured in the same run on the same machine.
The query's result and the exchange rates are checked equal before and after compaction.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from augworth.analysis import exchange_rates
from augworth.results import GROUP_COLUMNS, TREATMENT_COLUMNS, Store, compact, connect, read_results
from augworth.search_spaces import Cell

SWEEP = "bench-store"
QUERY = ("SELECT augmentation, data_size, avg(accuracy) AS accuracy FROM results "
         "WHERE final AND eval_set = 'test' GROUP BY ALL ORDER BY ALL")
FIT_COLUMNS = [*GROUP_COLUMNS, *TREATMENT_COLUMNS, "data_size", "seed", "eval_set", "accuracy", "final"]
EVAL_SETS = ("test", "corrupted", "noise", "blur", "contrast")
# (augmentation, strength, how many times the data it is worth): the synthetic truth
TREATMENTS = (("none", None, 1.0), ("flip", None, 1.6), ("crop", 2.0, 1.8), ("crop", 4.0, 2.4),
              ("rotate", 15.0, 1.3), ("rotate", 30.0, 1.1), ("cutout", 8.0, 1.4), ("cutout", 16.0, 1.2),
              ("trivialaugment", 0.5, 2.8), ("trivialaugment", 1.0, 3.2))
SIZES = (250, 500, 1000, 2000, 4000, 8000, 16000, 32000)
SEEDS = (0, 1, 2, 3, 4)


def best_seconds(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """The fastest of `repeats` runs (the least disturbed by other work on a shared machine), and a result."""
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


# ----- the synthetic sweep ---------------------------------------------------------------------------

def synthetic_cells(n: int) -> list[tuple[Cell, float]]:
    """The first n cells of widths × seeds × treatments × sizes (so a small n still has 3+ sizes per fit)."""
    widths = [8 * 2**i for i in range(math.ceil(n / (len(SEEDS) * len(TREATMENTS) * len(SIZES))))]
    grid = itertools.product(widths, SEEDS, TREATMENTS, SIZES)
    cells = []
    for width, seed, (aug, strength, worth), size in itertools.islice(grid, n):
        cell = Cell(dataset="cifar10", dataset_fingerprint="0123456789abcdef", data_size=size, seed=seed,
                    augmentation=aug, strength=strength, model="resnet18", width=width, steps=5000,
                    batch_size=128, eval_every=max(1, 5000 // 100), lr=0.1, momentum=0.9, nesterov=True,
                    weight_decay=5e-4, warmup_steps=100)
        cells.append((cell, worth))
    return cells


def cell_rows(cell: Cell, worth: float, n_rows: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """R/5 evaluation steps on each of 5 eval sets; final error a·(worth·x)^(−c) + b, plus seed noise."""
    n_steps = max(1, n_rows // len(EVAL_SETS))
    config = json.dumps(cell.to_dict(), sort_keys=True)
    base = cell.to_dict() | {
        "param_count": 11_000_000 * cell.width // 64, "host": "bench-host", "device": "cpu", "n_eval": 10_000,
        "torch_version": "2.11.0", "augworth_version": "0.1.0", "code_revision": "0" * 40,
        "config_json": config,
    }
    created = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    rows = []
    for j, eval_set in enumerate(EVAL_SETS):
        floor = 0.04 + 0.02 * j + 0.2 / cell.width  # harder eval sets and narrower nets: a higher asymptote
        final_error = 2.5 * (worth * cell.data_size) ** -0.4 + floor + rng.normal(0, 0.002)
        for i in range(1, n_steps + 1):
            progress = i / n_steps
            error = min(1.0, final_error + (0.9 - final_error) * math.exp(-6 * progress) * (1 - progress))
            rows.append(base | {"step": i * cell.eval_every, "final": i == n_steps, "eval_set": eval_set,
                                "accuracy": 1.0 - error, "loss": -math.log(max(1.0 - error, 1e-6)),
                                "train_seconds": 0.01 * i, "created_at": created})
    return rows


def build_store(root: str, n_cells: int, n_rows: int) -> Store:
    store = Store(root)
    store.write_spec(SWEEP, f"name: {SWEEP}\n")
    rng = np.random.default_rng(0)
    for cell, worth in synthetic_cells(n_cells):
        store.write_cell(SWEEP, cell.cell_key, cell_rows(cell, worth, n_rows, rng))
    return store


# ----- what is timed ---------------------------------------------------------------------------------

def measure(store: Store, repeats: int) -> dict[str, tuple[float, Any]]:
    """Seconds (best of `repeats`) and a result of each reader of the store as it is now."""

    def query() -> pd.DataFrame:
        return connect(store, SWEEP).execute(QUERY).df()

    def load_final() -> pd.DataFrame:
        return read_results(store, SWEEP, columns=FIT_COLUMNS, final_only=True)

    final = load_final()
    return {
        "query": best_seconds(query, repeats),
        "load final": best_seconds(load_final, repeats),
        "fits": best_seconds(lambda: exchange_rates(final), repeats),
        "load + fits": best_seconds(lambda: exchange_rates(load_final()), repeats),
        "load all": (best_seconds(lambda: read_results(store, SWEEP), repeats)[0], None),
        "done keys": (best_seconds(lambda: store.done_keys(SWEEP), repeats)[0], None),
    }


def write_seconds_per_cell(n_cells: int, n_rows: int, fsync: bool) -> float:
    """`Store.write_cell` per cell, with each write's fsyncs (file, then folder) or without."""
    from augworth.results import files

    kept, files.FSYNC = files.FSYNC, fsync
    try:
        with tempfile.TemporaryDirectory(prefix="augworth-bench-write-") as root:
            t0 = time.perf_counter()
            build_store(root, n_cells, n_rows)
            return (time.perf_counter() - t0) / n_cells
    finally:
        files.FSYNC = kept


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    keys = [c for c in df.columns if df[c].dtype != float]
    return df.sort_values(keys, ignore_index=True)


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(prog="python -m bench.store", description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=2000, help="cells in the synthetic sweep")
    parser.add_argument("--rows", type=int, default=500, help="rows per cell (5 eval sets × rows/5 steps)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each; the best counts")
    parser.add_argument("--smoke", action="store_true", help="tiny run for tests: 24 cells × 10 rows, once")
    args = parser.parse_args(argv)
    n_cells, n_rows, repeats = (24, 10, 1) if args.smoke else (args.cells, args.rows, args.repeats)

    with tempfile.TemporaryDirectory(prefix="augworth-bench-store-") as root:
        t0 = time.perf_counter()
        store = build_store(root, n_cells, n_rows)
        build_s = time.perf_counter() - t0
        folder = store.layout.results_dir(SWEEP)
        files = store.result_files(SWEEP)
        n_total = n_cells * max(1, n_rows // len(EVAL_SETS)) * len(EVAL_SETS)

        seconds: dict[str, float] = {}
        seconds["pandas, per file + concat"], everything = best_seconds(
            lambda: pd.concat([pd.read_parquet(f) for f in files], ignore_index=True), repeats)
        seconds["pandas, read_parquet(folder)"], _ = best_seconds(lambda: pd.read_parquet(folder), repeats)
        before = measure(store, repeats)

        report = compact(store, SWEEP)
        seconds["compact"] = report.seconds
        after = measure(store, repeats)
        seconds["pandas, read_parquet(folder) compacted"], _ = best_seconds(lambda: pd.read_parquet(folder),
                                                                            repeats)
        if len(everything) != n_total:  # the baseline read what the timed readers read
            raise AssertionError(f"baseline read {len(everything)} rows, expected {n_total}")
        for name in ("query", "fits", "load + fits"):
            pd.testing.assert_frame_equal(_sorted(before[name][1]), _sorted(after[name][1]))
        for name in before:
            seconds[f"{name}, per-cell files"] = before[name][0]
            seconds[f"{name}, compacted"] = after[name][0]

    n_writes = min(n_cells, 200)
    write = {fsync: min(write_seconds_per_cell(n_writes, n_rows, fsync) for _ in range(repeats))
             for fsync in (False, True)}

    baseline = seconds["pandas, per file + concat"]
    print(f"store of {n_cells:,} cells × {n_rows} rows ({len(everything):,} rows, {len(files):,} files) "
          f"built in {build_s:.1f} s; compacted into {report.files_after} files in {report.seconds:.2f} s; "
          f"best of {repeats}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"ratio = baseline / seconds, baseline = reading everything with pandas over the per-cell files "
          f"({baseline:.3f} s)")
    print(f"  {'':44s} {'seconds':>9s} {'ratio':>9s}")
    order = ["pandas, per file + concat", "pandas, read_parquet(folder)",
             "pandas, read_parquet(folder) compacted",
             *(f"{name}, {layout}" for name in before for layout in ("per-cell files", "compacted")),
             "compact"]
    for name in order:
        print(f"  {name:44s} {seconds[name]:9.3f} {baseline / seconds[name]:8.1f}x")
    print(f"write_cell, {n_writes} cells × {n_rows} rows: {write[True] * 1e3:.2f} ms per cell with fsync (file and "
          f"folder), {write[False] * 1e3:.2f} ms without: {write[True] / write[False]:.2f}x")
    seconds["write_cell with fsync"], seconds["write_cell without fsync"] = write[True], write[False]
    return seconds


if __name__ == "__main__":
    main()
