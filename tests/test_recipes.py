"""The recipes in docs/recipes, as far as one machine without SLURM, Kubernetes or a GPU can take them.

- SLURM: the sbatch script runs as it is, with SLURM's variables set and `srun`/`scontrol` stand-ins that run
  each step here: its `ray start` lines bring up a real head and a worker on this machine (logical GPUs), its
  wait for the nodes runs, and its `augworth run` line runs with `--dry-run`. Not tested: a real SLURM
  allocation, several hosts.
- Fractional GPUs: on that cluster, placement groups of the runner's per-cell request (Tune places each trial
  as one) with gpus_per_cell 0.25: four per logical GPU. The cells themselves are not run: a GPU cell
  without CUDA fails by design.
- KubeRay: the RayJob manifest is parsed; its spec (the ConfigMap) passes augworth's checks, its entrypoint is
  a valid `augworth run` whose paths are mounted in the head, each worker pod has room for whole cells, and the
  operator is asked for token authentication. Not tested: a Kubernetes cluster, KubeRay itself, the image
  (its install is: tests/test_install.py).
- SLURM's token: the script runs with an empty home, makes the token there before the head starts, and the
  head refuses a client with no token and one with a wrong token.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, free_port, tiny_spec

RECIPES = ROOT / "docs" / "recipes"
BIN = Path(sys.executable).parent

FAKE_SRUN = """#!/bin/bash
# srun's options (--nodes=1 --ntasks=1 -w NODE) dropped; the step runs on this machine
while [[ $# -gt 0 && $1 == -* ]]; do
    if [[ $1 == -w ]]; then shift 2; else shift; fi
done
exec "$@"
"""
FAKE_SCONTROL = """#!/bin/bash
# `scontrol show hostnames LIST`: one name per node
[[ $1 == show && $2 == hostnames ]] && tr ',' '\\n' <<< "$3"
"""


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """The sbatch script, run with a two-node allocation's variables; yields its log and the head's address."""
    tmp = tmp_path_factory.mktemp("slurm")
    fake = tmp / "bin"
    fake.mkdir()
    for name, text in (("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL)):
        (fake / name).write_text(text)
        (fake / name).chmod(0o755)
    (tmp / "spec.yaml").write_text(tiny_spec("slurm"))
    port = free_port()
    home = tmp / "home"  # a user's first job: an empty (shared) home, no token anywhere yet
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN",
                                                            "RAY_AUTH_TOKEN_PATH")} | {
        "PATH": f"{fake}{os.pathsep}{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONPATH": str(ROOT),
        "SLURM_JOB_NODELIST": "node-a,node-b", "SLURM_CPUS_PER_TASK": "6", "SLURM_GPUS_PER_TASK": "1",
        "RAY_PORT": str(port), "HOME": str(home)}
    # its own session: the backgrounded `ray start --block` steps (and all they start) go with one killpg. Output
    # to a file: those steps keep the script's stdout open after the script itself has ended
    log_path = tmp / "sbatch.log"
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(["bash", str(RECIPES / "slurm.sbatch"), "spec.yaml", str(tmp / "store"),
                                 "--dry-run"], cwd=tmp, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        proc.wait(timeout=300)
        log = log_path.read_text()
        ip = subprocess.run(["hostname", "--ip-address"], capture_output=True, text=True).stdout.split()[0]
        yield proc.returncode, log, tmp, f"{ip}:{port}", env  # the head's address, as the script computes it
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def test_the_sbatch_script_starts_a_head_and_a_worker_and_runs_augworth(slurm_cluster):
    code, log, tmp, _, _ = slurm_cluster
    assert code == 0, log[-3000:]
    # the last step is `augworth run ... --dry-run`: the spec's cells counted, nothing trained
    assert "sweep slurm: 12 cells" in log, log[-3000:]
    assert not (tmp / "store" / "slurm" / "results").exists()


REFUSED = """\
import sys
import ray
try:
    ray.init(address=sys.argv[1], log_to_driver=False)
except Exception as exc:  # refused: how, in one line
    print("refused:", type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
else:
    print("connected")
"""


def test_the_slurm_head_made_its_token_in_the_empty_home_and_refuses_clients_without_it(slurm_cluster):
    code, log, tmp, address, env = slurm_cluster
    assert code == 0, log[-3000:]
    token = tmp / "home" / ".ray" / "auth_token"
    assert token.is_file() and token.stat().st_mode & 0o077 == 0  # made before the head started; yours only
    assert token.read_text().strip() not in log  # never printed into the job's log
    stranger = tmp / "stranger"
    stranger.mkdir()
    # no token (how a stranger on the cluster's network comes), and a wrong one; Ray's 20 tries of 1 s cut to 2
    for extra in ({"HOME": str(stranger)}, {"HOME": str(stranger), "RAY_AUTH_MODE": "token",
                                             "RAY_AUTH_TOKEN": "0" * 64}):
        extra |= {"RAY_gcs_server_port_wait_time_s": "2"}
        out = subprocess.run([sys.executable, "-c", REFUSED, address], env=env | extra, capture_output=True,
                             text=True, timeout=120)
        assert out.stdout.startswith("refused:"), (extra, out.stdout, out.stderr[-2000:])


PACKING = """\
import json, sys
import ray
from ray.util.placement_group import placement_group, placement_group_table
from augworth.orchestrator.resources import cell_bundle, concurrent_cells
from augworth.search_spaces import parse_spec

spec = parse_spec(open(sys.argv[2]).read())
ray.init(address=sys.argv[1], log_to_driver=False)
bundle = {name: amount for name, amount in cell_bundle(spec.execution).items() if amount}
groups = [placement_group([bundle]) for _ in range(8)]  # Tune places each trial as one such group
ray.get([g.ready() for g in groups], timeout=120)
print(json.dumps({"nodes": [n["NodeID"] for n in ray.nodes() if n["Alive"]], "total": ray.cluster_resources(),
                  "concurrent": concurrent_cells(ray.cluster_resources(), bundle), "bundle": bundle,
                  "placed_on": [placement_group_table(g)["bundles_to_node_id"][0] for g in groups],
                  "gpu_left": ray.available_resources().get("GPU", 0)}))
"""


def test_the_slurm_cluster_packs_four_quarter_gpu_cells_per_gpu(slurm_cluster):
    code, log, tmp, address, env = slurm_cluster
    assert code == 0, log[-3000:]
    spec = tmp / "quarter.yaml"
    spec.write_text(tiny_spec("gpu").replace("execution: {", "execution: {gpus_per_cell: 0.25, "))
    # a driver of its own, as the script's (its mode and its home's token): this process's Ray read its auth mode
    # when it was imported
    out = subprocess.run([sys.executable, "-c", PACKING, address, str(spec)], env=env | {"RAY_AUTH_MODE": "token"},
                         capture_output=True,
                         text=True, timeout=200)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(got["nodes"]) == 2 and got["total"]["CPU"] == 12 and got["total"]["GPU"] == 2  # as SLURM said
    assert got["bundle"] == {"CPU": 1, "GPU": 0.25} and got["concurrent"] == 8  # the GPUs decide: 2 / 0.25
    assert sorted(got["placed_on"].count(n) for n in got["nodes"]) == [4, 4]  # four cells on each node's GPU
    assert got["gpu_left"] == 0  # a ninth cell waits for a quarter of a GPU


def test_the_rayjob_manifest_runs_a_valid_spec_on_pods_that_fit_its_cells():
    from typer.main import get_command

    from augworth.orchestrator.cli import app
    from augworth.orchestrator.plan import check_names
    from augworth.orchestrator.resources import cell_bundle
    from augworth.search_spaces import parse_spec

    docs = list(yaml.safe_load_all((RECIPES / "rayjob.yaml").read_text()))
    config = next(d for d in docs if d["kind"] == "ConfigMap")
    job = next(d for d in docs if d["kind"] == "RayJob")
    assert job["apiVersion"] == "ray.io/v1" and job["spec"]["shutdownAfterJobFinishes"] is True
    # the entrypoint: a valid `augworth run` command line
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:2] == ["augworth", "run"]
    group = get_command(app)
    run = group.get_command(group.make_context("augworth", ["run", "--help"], resilient_parsing=True), "run")
    params = run.make_context("run", argv[2:]).params  # `augworth run`'s own parser: a bad option fails here
    assert params["no_progress"] is True
    cluster = job["spec"]["rayClusterSpec"]
    head = cluster["headGroupSpec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in head["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in head["volumes"]}
    # the spec path is the ConfigMap's key where the head mounts it; the store is on the shared claim
    spec_path, store = str(params["spec"]), params["store"]
    assert volumes["spec"]["configMap"]["name"] == config["metadata"]["name"]
    assert spec_path == f"{mounts['spec']}/sweep.yaml" and "sweep.yaml" in config["data"]
    assert store.startswith(mounts["store"] + "/") and "persistentVolumeClaim" in volumes["store"]
    # the spec passes augworth's checks (names against the registries)
    text = config["data"]["sweep.yaml"]
    spec = parse_spec(text, "rayjob.yaml")
    check_names(spec, text, "rayjob.yaml")
    assert spec.dataset.root.startswith(mounts["store"] + "/")  # the data set is read from the shared volume
    need = cell_bundle(spec.execution)
    for group in cluster["workerGroupSpecs"]:
        params = group["rayStartParams"]
        pod = group["template"]["spec"]
        limits = pod["containers"][0]["resources"]["limits"]
        cpus, gpus = float(params["num-cpus"]), float(params["num-gpus"])
        assert cpus <= float(limits["cpu"]) and gpus <= float(limits["nvidia.com/gpu"])  # Ray sees what the pod has
        assert cpus % need["CPU"] == 0 and (gpus / need["GPU"]) == cpus / need["CPU"]  # whole cells, none idle
        assert {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]} >= {mounts["store"]}  # checkpoints
    assert float(cluster["headGroupSpec"]["rayStartParams"]["num-gpus"]) == 0  # no cell trains on the head
    # token authentication by the operator (KubeRay's AuthOptions), never turned off in a container
    assert cluster["authOptions"] == {"mode": "token"}
    pods = [cluster["headGroupSpec"]["template"]["spec"]] + [g["template"]["spec"] for g in cluster["workerGroupSpecs"]]
    for pod in pods:
        for container in pod["containers"]:
            assert not any(e["name"] == "RAY_AUTH_MODE" and e.get("value") != "token" for e in container.get("env", []))
            assert container["image"] == "ghcr.io/your-org/augworth:latest"  # docs/recipes/Dockerfile's build line
