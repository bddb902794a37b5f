"""A real two-node Ray cluster in one machine: a node removed mid-sweep, nothing lost, nothing twice."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import ROOT

from results import Store, read_results

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
execution: {cells_per_trial: 2}
"""


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    worker = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster, worker
    cluster.shutdown()


def test_a_node_removed_mid_sweep_loses_nothing(cluster, tmp_path):
    cluster, worker = cluster
    (tmp_path / "spec.yaml").write_text(SPEC)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "run", "spec.yaml", "--store", "store",
                             "--address", cluster.address, "--no-progress"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stderr:  # the driver logs each finished cell; remove the node after the first
        lines.append(line)
        if line.startswith("augworth: cell ") and line.rstrip().endswith(" done"):
            cluster.remove_node(worker)
            break
    out, rest = proc.communicate(timeout=400)
    assert proc.returncode == 0, "".join(lines) + rest
    store = Store(tmp_path / "store")
    assert len(store.done_keys("nodes")) == 12 and store.failures("nodes") == {}
    frame = read_results(store, "nodes")
    assert (frame.groupby("cell_key").size() == 2).all()  # one copy of each cell's rows
