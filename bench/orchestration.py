"""P1: orchestration overhead. N cells of ~1 s of real training each, through `augworth run`, against the ideal
N·t/cores and against plain Ray Tune run side by side (tuned: reused actors, auto loggers off; and defaults).

    python -m bench.orchestration                      # N = 1,000 (augworth, plain tuned), 200 (plain defaults)
    python -m bench.orchestration --cells 200 --defaults-cells 50
    python -m bench.orchestration --smoke              # a few cells of a few steps: checks that it runs

Every configuration trains the same cells (digits, small_cnn) with one torch thread per cell; wall times
include starting Ray. t is the median time of one cell (training and evaluation) in this process. A second
baseline runs the same cells in plain processes without Ray (`bare`): the best any orchestrator can do here,
where two busy processes share the caches and memory bandwidth of two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SPEC = """\
name: bench-p1
dataset: {{name: digits}}
model: {{name: small_cnn, width: 16}}
augmentations: [{{policy: none}}, {{policy: crop, strength: [1]}}, {{policy: flip}}, {{policy: trivialaugment}}]
data_sizes: {sizes}
seeds: {seeds}
budget: {{steps: {steps}, batch_size: 64}}
optimizer: {{lr: 0.05, warmup_steps: 0}}
eval_sets: [test]
"""

# Plain Ray Tune, written the way its examples write a trainable: one cell per trial.
PLAIN_TUNE = textwrap.dedent("""\
    import json, os, sys, time
    t0 = time.perf_counter()
    tuned = sys.argv[2] == "tuned"
    if tuned:
        os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    import ray
    from ray import tune
    cells = json.load(open(sys.argv[1]))

    def trainable(config):
        import torch
        from augworth.search_spaces import Cell
        from augworth.trainables.datasets import load_dataset
        from augworth.trainables.train import train_cell
        torch.set_num_threads(1)
        cell = Cell.from_dict(cells[config["i"]])
        result = train_cell(cell, load_dataset("digits"), ["test"])
        tune.report({"accuracy": result.evaluations[-1].accuracy})

    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space={"i": tune.grid_search(list(range(len(cells))))},
        tune_config=tune.TuneConfig(reuse_actors=tuned),
        run_config=tune.RunConfig(storage_path=sys.argv[3], verbose=0),
    )
    results = tuner.fit()
    assert len(results) == len(cells) and not results.errors, results.errors
    print(json.dumps({"wall": time.perf_counter() - t0}))
""")


def grid(n: int) -> tuple[list[int], list[int]]:
    """Sizes x seeds x 4 treatments = n cells (n a multiple of 4)."""
    per_treatment = max(1, n // 4)
    sizes = [40 * (i + 1) for i in range(min(10, per_treatment))]
    seeds = list(range(max(1, per_treatment // len(sizes))))
    return sizes, seeds


def calibrate(target_seconds: float, smoke: bool) -> tuple[int, float]:
    """Steps for a ~target-second cell, and the median time t of such a cell in this process (1 thread)."""
    import torch

    from augworth.orchestrator.plan import expand
    from augworth.search_spaces import parse_spec
    from augworth.trainables.datasets import load_dataset
    from augworth.trainables.train import train_cell

    torch.set_num_threads(1)
    data = load_dataset("digits")

    def one_cell(steps: int) -> float:
        spec = parse_spec(SPEC.format(sizes=[200], seeds=[0], steps=steps))
        cell = expand(spec, None, "bench")[0]
        t0 = time.perf_counter()
        train_cell(cell, data, ["test"])
        return time.perf_counter() - t0

    one_cell(20)
    steps = 4 if smoke else max(10, round(target_seconds * 50 / one_cell(50)))
    t = statistics.median(one_cell(steps) for _ in range(1 if smoke else 5))
    return steps, t


CPU_KINDS = (("driver", "orchestrator.cli"), ("raylet", "raylet/raylet"), ("gcs", "gcs_server"),
             ("dashboard", "dashboard/dashboard.py"), ("dashboard agent", "DashboardAgent"),
             ("runtime env agent", "RuntimeEnvAgent"), ("log monitor", "log_monitor.py"),
             ("autoscaler monitor", "monitor.py"), ("trial workers", "ray::ImplicitFunc"), ("other workers", "ray::"))


def cpu_seconds() -> dict[int, tuple[str, float]]:
    """Every process's kind (by its command line) and CPU seconds so far, from /proc (Linux)."""
    tick = os.sysconf("SC_CLK_TCK")
    seen = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        kind = next((k for k, marker in CPU_KINDS if marker in cmd), None)
        if kind is not None:
            seen[int(entry)] = (kind, (int(fields[11]) + int(fields[12])) / tick)
    return seen


def run_augworth(n: int, steps: int, workdir: Path, cpu: dict[str, float] | None = None) -> float:
    """`cpu`: filled with CPU seconds per kind of process (the driver, Ray's own, the workers), sampled."""
    sizes, seeds = grid(n)
    spec = workdir / "spec.yaml"
    spec.write_text(SPEC.format(sizes=sizes, seeds=seeds, steps=steps))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"PYTHONPATH": str(ROOT)}
    before = set(cpu_seconds()) if cpu is not None else set()
    last: dict[int, tuple[str, float]] = {}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "augworth.orchestrator.cli", "run", str(spec), "--store",
                             str(workdir / "store"), "--no-progress"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    while cpu is not None and proc.poll() is None:  # a sample a second: what a process used until it went
        last |= {pid: v for pid, v in cpu_seconds().items() if pid not in before}
        time.sleep(1)
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    out = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    if cpu is not None:
        for kind, seconds in last.values():
            cpu[kind] = cpu.get(kind, 0.0) + seconds
    if out.returncode != 0:
        raise SystemExit(f"augworth run failed:\n{out.stderr[-3000:]}")
    done = len(list((workdir / "store" / "bench-p1" / "results").glob("*.parquet")))
    if done != len(sizes) * len(seeds) * 4:
        raise SystemExit(f"augworth wrote {done} cells, expected {len(sizes) * len(seeds) * 4}")
    return wall


def run_plain(n: int, steps: int, workdir: Path, mode: str) -> float:
    from augworth.orchestrator.plan import expand
    from augworth.search_spaces import parse_spec

    sizes, seeds = grid(n)
    cells = [c.to_dict() for c in expand(parse_spec(SPEC.format(sizes=sizes, seeds=seeds, steps=steps)), None, "b")]
    (workdir / "cells.json").write_text(json.dumps(cells))
    (workdir / "plain.py").write_text(PLAIN_TUNE)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, str(workdir / "plain.py"), str(workdir / "cells.json"), mode,
                          str(workdir / f"tune-{mode}")], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"plain Tune ({mode}) failed:\n{out.stderr[-3000:]}")
    return wall


def _bare_worker(cells: list[dict]) -> int:
    import torch

    from augworth.search_spaces import Cell
    from augworth.trainables.datasets import load_dataset
    from augworth.trainables.train import train_cell

    torch.set_num_threads(1)
    data = load_dataset("digits")
    for c in cells:
        train_cell(Cell.from_dict(c), data, ["test"])
    return len(cells)


def run_bare(n: int, steps: int, cores: int) -> float:
    """The same cells in `cores` plain processes, no Ray: what perfect orchestration gets on this machine
    (process start, data loading and two processes sharing caches and memory bandwidth included)."""
    import multiprocessing as mp

    from augworth.orchestrator.plan import expand
    from augworth.search_spaces import parse_spec

    sizes, seeds = grid(n)
    cells = [c.to_dict() for c in expand(parse_spec(SPEC.format(sizes=sizes, seeds=seeds, steps=steps)), None, "b")]
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(cores) as pool:
        done = sum(pool.map(_bare_worker, [cells[i::cores] for i in range(cores)]))
    assert done == len(cells)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=1000, help="cells for augworth and plain tuned Tune")
    parser.add_argument("--defaults-cells", type=int, default=200, help="cells for plain Tune with defaults")
    parser.add_argument("--cell-seconds", type=float, default=1.0)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--only", choices=["bare", "augworth", "tuned", "defaults"], action="append")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--cpu-breakdown", action="store_true",
                        help="augworth's run: CPU seconds per process kind (driver, raylet, GCS, agents, workers)")
    args = parser.parse_args(argv)
    cpu: dict[str, float] | None = {} if args.cpu_breakdown else None
    if args.smoke:  # the test suite's check that it runs: the bare baseline and augworth (plain Tune: full runs)
        args.cells, args.defaults_cells = 8, 4
    every = ["bare", "augworth"] + ([] if args.smoke else ["tuned", "defaults"])
    only = set(args.only or every)

    steps, t = calibrate(args.cell_seconds, args.smoke)
    print(f"one cell: {steps} steps, t = {t:.3f} s (median, 1 thread, in process); cores = {args.cores}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-p1-") as tmp:
        for name, n, run in (
            ("bare processes, no Ray", args.cells, lambda n, d: run_bare(n, steps, args.cores)),
            ("augworth run", args.cells, lambda n, d: run_augworth(n, steps, d, cpu)),
            ("plain Tune, tuned", args.cells, lambda n, d: run_plain(n, steps, d, "tuned")),
            ("plain Tune, defaults", args.defaults_cells, lambda n, d: run_plain(n, steps, d, "defaults")),
        ):
            key = {"bare processes, no Ray": "bare", "augworth run": "augworth", "plain Tune, tuned": "tuned",
                   "plain Tune, defaults": "defaults"}[name]
            if key not in only:
                continue
            sizes, seeds = grid(n)
            n = len(sizes) * len(seeds) * 4
            workdir = Path(tmp) / key
            workdir.mkdir()
            wall = run(n, workdir)
            ideal = n * t / args.cores
            rows.append({"config": name, "cells": n, "wall_s": wall, "ideal_s": ideal, "ratio_to_ideal": wall / ideal,
                         "overhead_per_cell_s": (wall - ideal) * args.cores / n})
            print(f"{name:22s} N={n:5d}  wall {wall:8.1f} s  ideal {ideal:8.1f} s  "
                  f"ratio {wall / ideal:5.3f}  overhead/cell {rows[-1]['overhead_per_cell_s']:+.3f} s", flush=True)
    if cpu:
        total = sum(cpu.values())
        print("CPU seconds of augworth's run by process (sampled each second from /proc):")
        for kind, seconds in sorted(cpu.items(), key=lambda kv: -kv[1]):
            print(f"  {kind:20s} {seconds:8.1f} s  {seconds / total:6.1%}")
        rows.append({"cpu_seconds": cpu})
    return rows


if __name__ == "__main__":
    main()
