"""P4: peak RSS of the sweep driver at 100 vs 2,000 cells (Ray issue #64231 reports linear growth in Tune).

    python -m bench.driver_memory                 # 100 and 2,000 cells of 2 steps each
    python -m bench.driver_memory --smoke

Each size runs in a fresh driver process (plan + run on a private local Ray) that reports its own peak RSS
(getrusage, the driver alone: Ray's raylet, GCS and workers are other processes).
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
    from orchestrator.plan import plan_sweep
    from orchestrator.runner import run_plan
    from results import Store
    store = Store(sys.argv[2])
    plan = plan_sweep(open(sys.argv[1]).read(), sys.argv[1], store)
    t0 = time.perf_counter()
    summary = run_plan(plan, store, show_progress=False)
    assert summary.done == len(plan.cells), summary
    print(json.dumps({"cells": len(plan.cells), "seconds": time.perf_counter() - t0,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""")


def run(n: int, tmp: Path) -> dict:
    seeds = list(range(max(1, n // 2 // 10)))
    sizes = [20 * (i + 1) for i in range(min(10, max(1, n // 2)))]
    folder = tmp / f"n{n}"
    folder.mkdir()
    (folder / "spec.yaml").write_text(SPEC.format(sizes=sizes, seeds=seeds))
    (folder / "driver.py").write_text(DRIVER)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, str(folder / "driver.py"), str(folder / "spec.yaml"), str(folder / "store")],
                         env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=2000)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    if args.smoke:
        args.small, args.large = 4, 8
    with tempfile.TemporaryDirectory(prefix="bench-p4-") as tmp:
        rows = [run(n, Path(tmp)) for n in (args.small, args.large)]
    for r in rows:
        print(f"{r['cells']:5d} cells: driver peak RSS {r['peak_rss_mb']:7.1f} MB ({r['seconds']:.1f} s)")
    print(f"ratio {rows[1]['cells']} / {rows[0]['cells']} cells: {rows[1]['peak_rss_mb'] / rows[0]['peak_rss_mb']:.3f}")
    return rows


if __name__ == "__main__":
    main()
