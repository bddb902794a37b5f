"""`augworth submit` against a real head started with `ray start --head` from an empty home, as a new user starts
one: a token made with `ray get-auth-token --generate`, token authentication on for the head and the client."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest
from conftest import CLI, ROOT, free_port, tiny_spec

from augworth.results import Store

RAY = str(Path(sys.executable).parent / "ray")


def start_head(temp: Path, home: Path, path: str):
    """`ray start --head` in its own process group, from `home` (a token made there first) with `path` as its
    PATH (so the job's `python` is the first one there); ready when it says so. (process, address, env)"""
    dashboard = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")} | {
        "PYTHONPATH": str(ROOT), "PATH": path, "HOME": str(home), "RAY_AUTH_MODE": "token"}
    subprocess.run([RAY, "get-auth-token", "--generate"], env=env, check=True, capture_output=True, timeout=60)
    assert (home / ".ray" / "auth_token").is_file()
    proc = subprocess.Popen(
        [RAY, "start", "--head", "--block", "--port", str(free_port()), "--dashboard-host", "127.0.0.1",
         "--dashboard-port", str(dashboard), "--num-cpus", "2", "--temp-dir", str(temp), "--disable-usage-stats",
         "--dashboard-agent-listen-port", str(free_port())],  # not the default port: two heads run at once here
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    seen = []
    for line in proc.stdout:  # blocks until the head reports it is up
        seen.append(line)
        if "Ray runtime started" in line:
            break
    else:
        raise RuntimeError("ray start failed:\n" + "".join(seen))
    return proc, f"http://127.0.0.1:{dashboard}", env


def stop_head(proc: subprocess.Popen) -> None:
    # SIGKILL to the whole group (head, raylet, GCS, workers): a SIGTERM'd head takes ~30 s to wind down, and
    # nothing of it outlives the test: its temp dir is pytest's
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    """A head whose job `python` is this environment's, as for a user who started the head from it."""
    proc, address, env = start_head(tmp_path_factory.mktemp("ray-head"), tmp_path_factory.mktemp("home"),
                                    f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    yield address, env
    stop_head(proc)


def test_submit_runs_the_sweep_as_a_job_and_the_store_holds_the_cells(head, tmp_path):
    address, env = head
    spec = tmp_path / "tiny.yaml"
    spec.write_text(tiny_spec("job"))
    store, temp = tmp_path / "store", tmp_path / "tmp"
    temp.mkdir()
    result = subprocess.run([*CLI, "submit", str(spec), "--address", address,
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
    relative = subprocess.run([*CLI, "submit", str(spec), "--address", address,
                               "--store", "store"], env=env, capture_output=True, text=True, timeout=120)
    assert relative.returncode == 2 and "absolute path" in relative.stderr
    assert not (tmp_path / "store").exists()


def test_submit_to_a_head_whose_python_lacks_the_dependencies_says_so_in_one_line(tmp_path):
    # a head started with the environment's `ray` but without the environment on PATH: the job's `python` is
    # a bare interpreter (site-packages off), as on a cluster whose image lacks augworth's dependencies
    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "python").write_text(f"#!/bin/sh\nexec {sys.base_prefix}/bin/python3 -S \"$@\"\n")
    (bare / "python").chmod(0o755)
    temp = Path(tempfile.mkdtemp(prefix="augworth-ray-"))  # Ray's socket paths must stay under 108 bytes
    proc, address, env = start_head(temp, tmp_path / "home", f"{bare}{os.pathsep}/usr/bin:/bin")
    try:
        spec = tmp_path / "tiny.yaml"
        spec.write_text(tiny_spec("bare"))
        client_env = env | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        result = subprocess.run([*CLI, "submit", str(spec), "--address", address,
                                 "--store", str(tmp_path / "store"), "--wait"], env=client_env, capture_output=True,
                                text=True, timeout=300, cwd=tmp_path)
    finally:
        stop_head(proc)
        shutil.rmtree(temp, ignore_errors=True)
    assert result.returncode == 3 and "FAILED" in result.stdout, result.stdout[-3000:] + result.stderr[-3000:]
    assert "augworth: the cluster's Python" in result.stdout and "typer" in result.stdout
    assert "Traceback" not in result.stdout and not (tmp_path / "store").exists()


def test_submit_refuses_a_store_uri_with_credentials_which_the_entrypoint_would_keep(tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(tiny_spec("creds"))
    result = subprocess.run([*CLI, "submit", str(spec), "--address",
                             "http://127.0.0.1:1", "--store", "s3://KEY:hunter2@bucket/store"],
                            capture_output=True, text=True, timeout=120, env=os.environ | {"PYTHONPATH": str(ROOT)})
    assert result.returncode == 2 and "carries credentials" in result.stderr and "hunter2" not in result.stderr


def test_the_job_ships_augworth_as_one_package_that_imports_from_the_upload(tmp_path):
    """What Ray uploads as the job's `py_modules` (its own packing, as for any local folder), unpacked on its own: every
    module of the five packages under `augworth/`, byte for byte through the checkout's links, and importable."""
    from ray._private.runtime_env.packaging import create_package

    from augworth.orchestrator.submit import shipped_modules

    (folder,) = shipped_modules()
    package = tmp_path / "augworth.zip"
    create_package(folder, package, include_gitignore=True, include_parent_dir=True)  # as py_modules packs a folder
    unpacked = tmp_path / "unpacked"
    zipfile.ZipFile(package).extractall(unpacked)
    for name in ("search_spaces", "results", "trainables", "orchestrator", "analysis"):
        for source in (ROOT / name).rglob("*.py"):
            shipped = unpacked / "augworth" / source.relative_to(ROOT)
            assert shipped.is_file() and not shipped.is_symlink(), shipped
            assert shipped.read_bytes() == source.read_bytes()
    code = "import augworth.analysis, augworth.orchestrator.cli as c; print(augworth.analysis.__file__, c.__file__)"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(unpacked)}
    where = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                           env=env)
    assert where.returncode == 0, where.stderr[-2000:]
    assert all(Path(p).is_relative_to(unpacked) for p in where.stdout.split())
