"""`augworth submit` against a real head started with `ray start --head` from an empty home, as a new user starts
one: a token made with `ray get-auth-token --generate`, token authentication on for the head and the client."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, free_port, tiny_spec

from results import Store

RAY = str(Path(sys.executable).parent / "ray")


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    """A head node in its own process group, ready when `ray start` says so; killed whole at the end."""
    temp = tmp_path_factory.mktemp("ray-head")
    home = tmp_path_factory.mktemp("home")
    dashboard = free_port()
    # the job's `python` is the head's: this environment's, as for a user who started the head from it
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")} | {
        "PYTHONPATH": str(ROOT), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(home), "RAY_AUTH_MODE": "token"}
    subprocess.run([RAY, "get-auth-token", "--generate"], env=env, check=True, capture_output=True, timeout=60)
    assert (home / ".ray" / "auth_token").is_file()
    proc = subprocess.Popen(
        [RAY, "start", "--head", "--block", "--port", str(free_port()), "--dashboard-host", "127.0.0.1",
         "--dashboard-port", str(dashboard), "--num-cpus", "2", "--temp-dir", str(temp), "--disable-usage-stats"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    seen = []
    for line in proc.stdout:  # blocks until the head reports it is up
        seen.append(line)
        if "Ray runtime started" in line:
            break
    else:
        raise RuntimeError("ray start failed:\n" + "".join(seen))
    yield f"http://127.0.0.1:{dashboard}", env
    # SIGKILL to the whole group (head, raylet, GCS, workers): a SIGTERM'd head takes ~30 s to wind down, and
    # nothing of it outlives the test: its temp dir is pytest's
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


def test_submit_runs_the_sweep_as_a_job_and_the_store_holds_the_cells(head, tmp_path):
    address, env = head
    spec = tmp_path / "tiny.yaml"
    spec.write_text(tiny_spec("job"))
    store, temp = tmp_path / "store", tmp_path / "tmp"
    temp.mkdir()
    result = subprocess.run([sys.executable, "-m", "orchestrator.cli", "submit", str(spec), "--address", address,
                             "--store", str(store), "--wait"], env=env | {"TMPDIR": str(temp)}, capture_output=True,
                            text=True, timeout=400, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "submitted sweep job as job" in result.stdout and "SUCCEEDED" in result.stdout
    assert len(Store(store).done_keys("job")) == 12
    assert not list(temp.glob("augworth-submit-*"))  # the job's working dir was uploaded, then removed here


def test_submit_refuses_a_relative_store_and_an_unreachable_head(head, tmp_path):
    address, env = head
    spec = tmp_path / "tiny.yaml"
    spec.write_text(tiny_spec("job"))
    relative = subprocess.run([sys.executable, "-m", "orchestrator.cli", "submit", str(spec), "--address", address,
                               "--store", "store"], env=env, capture_output=True, text=True, timeout=120)
    assert relative.returncode == 2 and "absolute path" in relative.stderr
    assert not (tmp_path / "store").exists()
