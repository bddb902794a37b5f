from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

# Tests import the packages from the checkout, whatever is installed.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")

DEMO = ROOT / "search_spaces" / "presets" / "digits_demo.yaml"

TINY_SPEC = """\
name: {name}
dataset: {{name: digits}}
model: {{name: small_cnn, width: 4}}
augmentations:
  - {{policy: none}}
  - {{policy: crop, strength: [1]}}
data_sizes: [40, 80, 160]
seeds: [0, 1]
budget: {{steps: 12, batch_size: 16, eval_every: 6}}
optimizer: {{lr: {lr}, warmup_steps: 2}}
eval_sets: [test, corrupted]
execution: {{retries: {retries}, cells_per_trial: 3}}
"""


def tiny_spec(name: str = "tiny", *, lr: float = 0.05, retries: int = 1) -> str:
    """12 cells of 12 steps each: a sweep that runs in seconds."""
    return TINY_SPEC.format(name=name, lr=lr, retries=retries)


def free_port() -> int:
    """A TCP port nobody listens on now (for a Ray head the test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


NAMESPACE = ["unshare", "--pid", "--fork", "--mount-proc"]  # a command under it has its own PID namespace (pid 1)


def unshare_works() -> bool:
    """Whether this machine lets a test start a process in a PID namespace of its own (root, Linux)."""
    import shutil
    import subprocess

    if shutil.which("unshare") is None:
        return False
    return subprocess.run([*NAMESPACE, "true"], capture_output=True).returncode == 0


CLI = [sys.executable, "-m", "augworth.orchestrator.cli"]  # the command line, as `augworth` runs it

PLUGINS = ROOT / "tests" / "plugins"  # a user's plugin module (execution.plugins), importable by every worker


@pytest.fixture(scope="module")
def ray_local():
    """One real local Ray per test module (2 CPUs), shut down at the end; its workers see tests/plugins."""
    import ray

    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(PLUGINS), os.environ.get("PYTHONPATH")) if p)
    sys.path.insert(0, str(PLUGINS))
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
