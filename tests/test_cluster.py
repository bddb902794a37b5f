"""A real Ray cluster in one machine: nodes removed and added mid-sweep, nothing lost, nothing twice."""

from __future__ import annotations

import os
import subprocess

import pytest
from conftest import CLI, ROOT

from augworth.results import Store, read_results

SPEC = """\
name: nodes
dataset: {name: digits}
model: {name: small_cnn, width: 4}
augmentations: [{policy: none}, {policy: crop, strength: 1}]
data_sizes: [40, 80, 160]
seeds: [0, 1]
budget: {steps: 60, batch_size: 16, eval_every: 30}
optimizer: {lr: 0.05, warmup_steps: 4}
eval_sets: [test]
execution: {cells_per_trial: 6}
"""


@pytest.fixture(scope="module")
def cluster():
    """A head that trains nothing (0 CPUs: the driver and its actors live there) and one worker node."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    worker = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster, worker
    cluster.shutdown()


def test_nodes_lost_and_added_mid_sweep_lose_nothing_retrain_no_finished_cell_and_get_work(cluster, tmp_path):
    # 24 cells in trials of 6, one at a time on the one worker. The worker goes after the first cell is
    # written, mid-chunk; Tune restarts that trial on a new node, which must skip the written cell. Once that
    # node trains, a third joins: Tune would never place a trial there within the running fit (it reuses its
    # actors), so the driver drains the fit and packs the cells left onto both nodes; the third trains some.
    cluster, worker = cluster
    (tmp_path / "spec.yaml").write_text(SPEC.replace("seeds: [0, 1]", "seeds: [0, 1, 2, 3]"))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([*CLI, "run", "spec.yaml", "--store", "store",
                             "--address", cluster.address, "--no-progress"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines, replacement, added = [], None, None
    for line in proc.stderr:  # the driver logs each cell started (and on which node) and done
        lines.append(line)
        if replacement is None and line.startswith("augworth: cell ") and line.rstrip().endswith(" done"):
            cluster.remove_node(worker)
            replacement = cluster.add_node(num_cpus=1).node_id  # where Tune restarts the trial
        elif added is None and replacement is not None and line.rstrip().endswith(f"started on node {replacement[:8]}"):
            added = cluster.add_node(num_cpus=1).node_id
    out, rest = proc.communicate(timeout=400)
    log = "".join(lines) + rest
    assert proc.returncode == 0 and added is not None, log
    store = Store(tmp_path / "store")
    assert len(store.done_keys("nodes")) == 24 and store.failures("nodes") == {}
    frame = read_results(store, "nodes")
    assert (frame.groupby("cell_key").size() == 2).all()  # one copy of each cell's rows
    # trainings counted: no cell starts again once it is done (the one in flight may start twice)
    events = [line.split()[2:4] for line in log.splitlines() if line.startswith("augworth: cell ")
              and line.split()[3:4] in (["started"], ["done"], ["skipped:"])]
    done_before: set[str] = set()
    for key, event in events:
        assert not (event == "started" and key in done_before), f"cell {key} trained again after it was done"
        if event == "done":
            done_before.add(key)
    assert len(done_before) == 24 and any(e == "skipped:" for _, e in events)  # the restart did happen
    assert f"node {added[:8]} joined" in log, log
    assert any(line.rstrip().endswith(f"started on node {added[:8]}") for line in log.splitlines()), log
