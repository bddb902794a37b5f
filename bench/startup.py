"""One cell in seconds: `augworth run` of a one-cell sweep against the bare sum, side by side.

    python -m bench.startup                 # 5 interleaved repeats
    python -m bench.startup --repeats 1     # the test suite's check that it runs

The baseline is what the work needs without an orchestrator, both as plain processes:
- a bare local Ray started and stopped (`ray.init(address="local", include_dashboard=False)`, `ray.shutdown()`);
- the same cell trained by `python -m augworth.trainables.train_cli --cell CELL --threads 1` (torch import, data,
  training, evaluation).
Goal: augworth's wall time (from `augworth run` to its exit) <= 1.2 x their sum. Each repeat runs the three
one after the other (interleaved, so drift on the machine hits all of them); the figures are medians. The
phases of the augworth run come from the timestamps of its `--no-progress` log lines.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SPEC = """\
name: bench-startup
dataset: {name: digits}
model: {name: small_cnn, width: 16}
augmentations: [{policy: none}]
data_sizes: [200]
seeds: [0]
budget: {steps: 50, batch_size: 64}
optimizer: {lr: 0.05, warmup_steps: 0}
eval_sets: [test]
"""

BARE_RAY = ("import ray; ray.init(address='local', include_dashboard=False, log_to_driver=False); "
            "ray.shutdown()")


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"PYTHONPATH": str(ROOT)}


def timed(cmd: list[str]) -> tuple[float, list[tuple[float, str]]]:
    """Wall seconds of `cmd`, and (seconds since start, line) for each line it writes on stderr."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    lines = [(time.perf_counter() - t0, line.rstrip()) for line in proc.stderr]
    if proc.wait() != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n" + "\n".join(line for _, line in lines[-30:]))
    return time.perf_counter() - t0, lines


def phases(lines: list[tuple[float, str]], wall: float) -> dict[str, float]:
    """When the augworth run said what: its first line (planning and Ray up), the cell started and done."""
    at = {}
    for seconds, line in lines:
        for name, pattern in (("ray_up", r"cells to run"), ("cell_started", r"cell \w+ started( on node \w+)?$"),
                              ("cell_done", r"cell \w+ done$")):
            if name not in at and re.search(pattern, line):
                at[name] = seconds
    return at | {"exit": wall}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    from augworth.orchestrator.plan import expand
    from augworth.search_spaces import parse_spec

    runs: dict[str, list[float]] = {"ray": [], "cell": [], "augworth": []}
    marks: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        spec = Path(tmp) / "spec.yaml"
        spec.write_text(SPEC)
        cell = Path(tmp) / "cell.json"
        cell.write_text(json.dumps(expand(parse_spec(SPEC), None, "bench-startup")[0].to_dict()))
        for _ in range(args.repeats):
            runs["ray"].append(timed([sys.executable, "-c", BARE_RAY])[0])
            runs["cell"].append(timed([sys.executable, "-m", "augworth.trainables.train_cli", "--cell", str(cell),
                                       "--threads", "1", "--out", str(Path(tmp) / "rows.json")])[0])
            store = Path(tmp) / "store"
            shutil.rmtree(store, ignore_errors=True)
            wall, lines = timed([sys.executable, "-m", "augworth.orchestrator.cli", "run", str(spec), "--store",
                                 str(store), "--no-progress"])
            if len(list((store / "bench-startup" / "results").glob("*.parquet"))) != 1:
                raise SystemExit("augworth run did not write its one cell")
            runs["augworth"].append(wall)
            marks.append(phases(lines, wall))
    med = {name: statistics.median(values) for name, values in runs.items()}
    bare = med["ray"] + med["cell"]
    row = med | {"bare_sum": bare, "ratio": med["augworth"] / bare}
    for name in ("ray_up", "cell_started", "cell_done", "exit"):
        row[f"augworth_{name}"] = statistics.median(m.get(name, float("nan")) for m in marks)
    print(f"bare Ray start + stop   {med['ray']:6.2f} s   (runs: {', '.join(f'{v:.2f}' for v in runs['ray'])})")
    print(f"bare cell, 1 thread     {med['cell']:6.2f} s   (runs: {', '.join(f'{v:.2f}' for v in runs['cell'])})")
    print(f"sum                     {bare:6.2f} s")
    print(f"augworth run, one cell  {med['augworth']:6.2f} s   "
          f"(runs: {', '.join(f'{v:.2f}' for v in runs['augworth'])})")
    print(f"  its log: sweep line at {row['augworth_ray_up']:.2f} s, "
          f"cell started {row['augworth_cell_started']:.2f} s, done {row['augworth_cell_done']:.2f} s, "
          f"exit {row['augworth_exit']:.2f} s (medians)")
    print(f"ratio augworth / sum    {row['ratio']:6.3f}   (goal <= 1.2)")
    return row


if __name__ == "__main__":
    main()
