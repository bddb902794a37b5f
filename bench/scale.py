"""Scale: 10,000 tiny cells on one local node and on an 8-node cluster in this machine, nodes lost mid-sweep.

    python -m bench.scale --only local --cells 10000       # one local Ray (this machine's CPUs)
    python -m bench.scale --only cluster --cells 10000     # ray.cluster_utils.Cluster: 8 nodes of 1 CPU
    python -m bench.scale --only cluster --nodes 2         # 2 nodes of 1 CPU: the local node's concurrency, so
                                                           # what a cluster costs without oversubscribed cores
    python -m bench.scale --only node-loss --cells 10000   # the cluster; 2 nodes removed, 1 added back
    python -m bench.scale --only local --cells 1000        # the driver's RSS at 1,000 (to set against 10,000)
    python -m bench.scale --smoke                          # a few cells each: checks that it runs

Each configuration runs `plan_sweep` + `run_plan` (what `augworth run` calls) in a fresh driver process, which
reports its wall time, its peak RSS (getrusage: the driver alone) and the size of Tune's experiment folder
just before the run removes it. Then, on the finished sweep: result files before and after `compact`, and the
latency of `status` and of a DuckDB `query` (in this process, and `augworth status` as a command).

The node-loss run reads the driver's cell log (`cell KEY started on node N`, `cell KEY done`): it removes two
worker nodes once 30% of the cells are done, adds one back at 60%, and then checks that every cell was
written exactly once, that no cell started again after it was done (trainings counted, not files), and that
the new node trained cells.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path

from bench.driver_memory import SPEC as P4_SPEC

ROOT = Path(__file__).resolve().parents[1]

# The same tiny cells as the driver-memory bench (P4): digits, small_cnn width 4, 2 steps, one eval.
SPEC = P4_SPEC.replace("name: bench-p4", "name: bench-scale")

DRIVER = textwrap.dedent("""\
    import json, os, resource, shutil, sys, time, types
    from augworth.orchestrator import runner
    from augworth.orchestrator.plan import plan_sweep
    from augworth.results import Store

    spec, root, address = sys.argv[1], sys.argv[2], (sys.argv[3] or None)
    tune_bytes = []

    def measured_rmtree(path, *args, **kwargs):  # Tune's experiment folder, measured before it goes
        if "augworth-tune-" in str(path):
            tune_bytes.append(sum(f.stat().st_size for f in __import__("pathlib").Path(path).rglob("*")
                                  if f.is_file()))
        return shutil.rmtree(path, *args, **kwargs)

    runner.shutil = types.SimpleNamespace(rmtree=measured_rmtree)  # the runner's only use of shutil
    store = Store(root)
    plan = plan_sweep(open(spec).read(), spec, store)
    t0 = time.perf_counter()
    summary = runner.run_plan(plan, store, address=address, show_progress=False, log_cells=True)
    seconds = time.perf_counter() - t0
    print(json.dumps({"cells": len(plan.cells), "done": summary.done, "failed": summary.failed,
                      "unfinished": summary.unfinished, "seconds": seconds,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "tune_state_bytes": max(tune_bytes, default=0)}), flush=True)
""")

NODES = 8


def grid(n: int) -> tuple[list[int], list[int]]:
    """2 treatments x 10 sizes x n/20 seeds = n cells (n a multiple of 20; fewer sizes below 20)."""
    sizes = [20 * (i + 1) for i in range(min(10, max(1, n // 2)))]
    return sizes, list(range(max(1, n // 2 // len(sizes))))


def make_cluster(nodes: int):
    """`nodes` nodes of one logical CPU each; the head is one of them (the driver and its actors live there)."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=1) for _ in range(nodes - 1)]
    cluster.wait_for_nodes()
    return cluster, workers


def drive(workdir: Path, n: int, address: str | None, on_line=None) -> tuple[dict, list[str]]:
    """The driver process; `on_line(line, done_so_far)` sees each log line as it comes."""
    sizes, seeds = grid(n)
    spec = workdir / "spec.yaml"
    spec.write_text(SPEC.format(sizes=sizes, seeds=seeds))
    (workdir / "driver.py").write_text(DRIVER)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(workdir / "driver.py"), str(spec), str(workdir / "store"),
                             address or ""], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None and proc.stdout is not None
    log, done = [], 0
    for line in proc.stderr:
        log.append(line.rstrip())
        if line.startswith("augworth: cell ") and line.rstrip().endswith(" done"):
            done += 1
        if on_line is not None:
            on_line(line.rstrip(), done)
    out = proc.stdout.read()
    if proc.wait() != 0:
        raise SystemExit("the driver failed:\n" + "\n".join(log[-40:]))
    return json.loads(out.strip().splitlines()[-1]), log


def trainings(log: list[str]) -> dict:
    """From the driver's cell log: per cell, its trainings started and its writes; a start after the done."""
    started, done, skipped, nodes = Counter(), Counter(), 0, Counter()
    after_done = []
    for line in log:
        words = line.split()
        if not line.startswith("augworth: cell ") or len(words) < 4:
            continue
        key, event = words[2], words[3]
        if event == "started":
            started[key] += 1
            if done[key]:
                after_done.append(key)
            if len(words) >= 7:
                nodes[words[6]] += 1
        elif event == "done":
            done[key] += 1
        elif event == "skipped:":
            skipped += 1
    return {"trainings": sum(started.values()), "cells_trained_twice": sum(v > 1 for v in started.values()),
            "writes": sum(done.values()), "cells_written_twice": sum(v > 1 for v in done.values()),
            "started_after_done": len(after_done), "skipped_on_restart": skipped, "by_node": dict(nodes)}


def finished_sweep(workdir: Path) -> dict:
    """Files before and after compaction; status and query latency on each."""
    from augworth.orchestrator.status import sweep_status
    from augworth.results import Store, compact, connect

    store, sweep = Store(workdir / "store"), "bench-scale"
    row: dict = {}

    def latencies(tag: str) -> None:
        row[f"files_{tag}"] = sum(1 for _ in (workdir / "store" / sweep / "results").iterdir())
        t0 = time.perf_counter()
        status = sweep_status(store, sweep)
        row[f"status_s_{tag}"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        n = connect(store, sweep).execute("SELECT count(DISTINCT cell_key) FROM results").fetchone()[0]
        row[f"query_s_{tag}"] = time.perf_counter() - t0
        row[f"cells_{tag}"] = n
        assert status.totals["done"] == n, (status.totals, n)

    latencies("before")
    compact(store, sweep)
    latencies("after")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "augworth.orchestrator.cli", "status", sweep, "--store",
                    str(workdir / "store")], env=env, check=True, capture_output=True)
    row["status_command_s_after"] = time.perf_counter() - t0
    return row


def run_config(name: str, n: int, workdir: Path, nodes: int) -> dict:
    if name == "local":
        result, log = drive(workdir, n, None)
        return {"config": name} | result | trainings(log) | finished_sweep(workdir)
    cluster, workers = make_cluster(nodes)
    events: dict = {}
    try:
        def on_line(line: str, done: int) -> None:
            if name != "node-loss":
                return
            if "removed" not in events and done >= 0.3 * n:
                for worker in workers[-2:]:
                    cluster.remove_node(worker)
                events["removed"] = [w.node_id[:8] for w in workers[-2:]]
                events["removed_at_done"] = done
            elif "added" not in events and "removed" in events and done >= 0.6 * n:
                events["added"] = cluster.add_node(num_cpus=1).node_id[:8]
                events["added_at_done"] = done

        result, log = drive(workdir, n, cluster.address, on_line)
    finally:
        cluster.shutdown()
    counted = trainings(log)
    row = {"config": name} | result | counted | finished_sweep(workdir) | events
    if name == "node-loss":
        row["added_node_trained"] = counted["by_node"].get(events.get("added", "-"), 0)
        assert row["cells_after"] == n and counted["writes"] == n and counted["cells_written_twice"] == 0, row
        assert counted["started_after_done"] == 0, row
    return row


def report(rows: list[dict]) -> None:
    for r in rows:
        print(f"{r['config']:9s} N={r['cells']:6d}  {r['seconds']:8.1f} s  {r['cells'] / r['seconds']:6.2f} cells/s  "
              f"driver peak RSS {r['peak_rss_mb']:7.1f} MB  Tune state {r['tune_state_bytes'] / 1e6:6.2f} MB")
        print(f"          files {r['files_before']} -> {r['files_after']} after compact;  status "
              f"{r['status_s_before']:.3f} -> {r['status_s_after']:.3f} s, `augworth status` "
              f"{r['status_command_s_after']:.2f} s;  query {r['query_s_before']:.3f} -> {r['query_s_after']:.3f} s")
        print(f"          trainings {r['trainings']} (cells trained twice {r['cells_trained_twice']}), writes "
              f"{r['writes']} (twice {r['cells_written_twice']}), started after done {r['started_after_done']}, "
              f"skipped on restart {r['skipped_on_restart']}")
        if r["config"] == "node-loss":
            print(f"          removed {r['removed']} at {r['removed_at_done']} done; added {r['added']} at "
                  f"{r['added_at_done']} done, which trained {r['added_node_trained']} cells")
        print(json.dumps(r), flush=True)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=10000)
    parser.add_argument("--nodes", type=int, default=NODES)
    parser.add_argument("--only", choices=["local", "cluster", "node-loss"], action="append")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    if args.smoke:
        args.cells, args.nodes = 20, 3
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        for name in args.only or ["local", "cluster", "node-loss"]:
            workdir = Path(tmp) / name
            workdir.mkdir()
            rows.append(run_config(name, args.cells, workdir, args.nodes))
            report(rows[-1:])
    return rows


if __name__ == "__main__":
    main()
