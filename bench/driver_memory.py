"""P4: peak RSS of the sweep driver at 100 vs 2,000 cells (Ray issue #64231 reports linear growth in Tune).

    python -m bench.driver_memory                 # 100 and 2,000 cells of 2 steps each
    python -m bench.driver_memory --smoke

Each size runs in a fresh driver process (plan + run on a private local Ray) that reports its own peak RSS
(getrusage, the driver alone: Ray's raylet, GCS and workers are other processes). `--smoke` runs both sizes in
one process (its peak RSS is shared, so its ratio means nothing): it only checks that the benchmark runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SPEC = """\
name: bench-p4
dataset: {{name: digits}}
model: {{name: small_cnn, width: 4}}
augmentations: [{{policy: none}}, {{policy: flip}}]
data_sizes: {sizes}
seeds: {seeds}
budget: {{steps: 2, batch_size: 16}}
optimizer: {{lr: 0.05, warmup_steps: 0}}
eval_sets: [test]
"""

DRIVER = textwrap.dedent("""\
    import json, resource, sys, time
    from augworth.orchestrator.plan import plan_sweep
    from augworth.orchestrator.runner import run_plan
    from augworth.results import Store
    for spec, root in zip(sys.argv[1::2], sys.argv[2::2]):
        store = Store(root)
        plan = plan_sweep(open(spec).read(), spec, store)
        t0 = time.perf_counter()
        summary = run_plan(plan, store, show_progress=False)
        assert summary.done == len(plan.cells), summary
        print(json.dumps({"cells": len(plan.cells), "seconds": time.perf_counter() - t0,
                          "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""")


def run(ns: list[int], tmp: Path) -> list[dict]:
    """Sweeps of `ns` cells, one after the other in one driver process."""
    args = []
    for n in ns:
        seeds = list(range(max(1, n // 2 // 10)))
        sizes = [20 * (i + 1) for i in range(min(10, max(1, n // 2)))]
        folder = tmp / f"n{n}"
        folder.mkdir()
        (folder / "spec.yaml").write_text(SPEC.format(sizes=sizes, seeds=seeds))
        args += [str(folder / "spec.yaml"), str(folder / "store")]
    (tmp / "driver.py").write_text(DRIVER)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, str(tmp / "driver.py"), *args], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    return [json.loads(line) for line in out.stdout.strip().splitlines()[-len(ns):]]


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=2000)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    if args.smoke:
        args.small, args.large = 4, 8
    with tempfile.TemporaryDirectory(prefix="bench-p4-") as tmp:
        if args.smoke:
            rows = run([args.small, args.large], Path(tmp))
        else:
            rows = [row for n in (args.small, args.large) for row in run([n], Path(tmp))]
    for r in rows:
        print(f"{r['cells']:5d} cells: driver peak RSS {r['peak_rss_mb']:7.1f} MB ({r['seconds']:.1f} s)")
    print(f"ratio {rows[1]['cells']} / {rows[0]['cells']} cells: {rows[1]['peak_rss_mb'] / rows[0]['peak_rss_mb']:.3f}")
    return rows


if __name__ == "__main__":
    main()
