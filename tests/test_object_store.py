"""A store on an object store, for real: an S3 server on loopback (moto's, a separate process speaking the S3 API)
reached through pyarrow's S3 filesystem, as `--store s3://...` is on a cluster.

- A sweep runs into it (results from the driver, kept weights from the workers through the store URI's query:
  its endpoint), reads back, and nothing it writes or prints holds the URI's credentials.
- One driver per sweep there is a renewed lease (orchestrator/lock.py): a second driver is refused; a lease
  whose holder was killed is taken once it is stale and was seen unchanged; a live holder whose lease looks
  stale to a contender's clock keeps it, because it renews; of drivers racing for a free lease, one wins.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import CLI, ROOT, free_port

import augworth.orchestrator.lock as lock_module
from augworth.orchestrator.lock import SweepLock, SweepLocked
from augworth.results import Store

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "augworth-test", "AWS_SECRET_ACCESS_KEY": "augworth-test",
               "AWS_EC2_METADATA_DISABLED": "true", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """(store URI factory, environment): an S3 server on loopback for this module, its buckets in memory."""
    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    for line in server.stderr:  # up once it says where it listens
        if "Running on" in line:
            break
    else:
        raise RuntimeError("the S3 server did not start")
    saved = {k: os.environ.get(k) for k in CREDENTIALS}
    os.environ.update(CREDENTIALS)  # pyarrow's S3 reads them when a filesystem is made

    def uri(bucket: str, userinfo: str = "") -> str:
        return (f"s3://{userinfo}{bucket}/store?endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1"
                "&allow_bucket_creation=true")

    yield uri, {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS",)} | {"PYTHONPATH": str(ROOT)}
    os.killpg(server.pid, signal.SIGKILL)
    server.wait()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def objects(store: Store) -> dict[str, bytes]:
    import pyarrow.fs as pafs

    infos = store.layout.fs.get_file_info(pafs.FileSelector(store.layout.root, recursive=True))
    return {i.path: store.layout.files.read_bytes(i.path) for i in infos if i.type == pafs.FileType.File}


def test_a_sweep_runs_into_an_s3_store_and_never_writes_or_shows_its_credentials(s3, tmp_path):
    uri, env = s3
    secret = "NotForYourEyes"
    store_uri = uri("sweeps", userinfo=f"augworth-test:{secret}@")  # credentials in the URI, as pyarrow allows
    (tmp_path / "tiny.yaml").write_text(
        "name: objects\ndataset: {name: digits}\nmodel: {name: small_cnn, width: 4}\n"
        "augmentations: [{policy: none}, {policy: crop, strength: 1}]\ndata_sizes: [40]\nseeds: [0, 1]\n"
        "budget: {steps: 4, batch_size: 8}\neval_sets: [test]\nexecution: {keep_weights: true}\n")
    shown = ""
    for args in (["run", "tiny.yaml"], ["status", "objects"], ["query", "objects", "SELECT count(*) AS n FROM results"],
                 ["status", "nosuch"]):
        out = subprocess.run([*CLI, *args, "--store", store_uri],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        shown += out.stdout + out.stderr
        assert out.returncode == (2 if "nosuch" in args else 0), out.stderr[-3000:]
    assert "4 cells done now" in shown and "no sweep 'nosuch'" in shown and "augworth-test:***@" in shown
    assert secret not in shown
    store = Store(uri("sweeps"))  # the same bucket, its credentials from the environment
    written = objects(store)
    assert len([p for p in written if p.endswith(".parquet") and "/results/" in p]) == 4
    assert len([p for p in written if p.endswith(".pt")]) == 4  # the workers wrote through the URI's endpoint
    assert not any(secret.encode() in data for data in written.values())
    assert not any(p.endswith((".lease", ".lock")) for p in written)  # released at the end


HOLDER = """
import sys
from augworth.results import Store
from augworth.orchestrator.lock import SweepLock
lock = SweepLock(Store(sys.argv[1]), "s").acquire()
print("held", flush=True)
sys.stdin.read()
lock.release()
"""


@pytest.fixture
def short_lease(monkeypatch):
    """Leases of 3 s here and in the processes the test starts (AUGWORTH_LEASE_S)."""
    monkeypatch.setattr(lock_module, "LEASE_S", 3.0)
    monkeypatch.setattr(lock_module, "SETTLE_S", 0.1)
    return {"AUGWORTH_LEASE_S": "3"}


def holder(store_uri: str, env: dict[str, str]) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, store_uri], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def backdate(store: Store, by: float) -> dict:
    """The lease as it would read `by` seconds later with no renewal in between (its time moved back)."""
    path = f"{store.layout.sweep_dir('s')}/.lease"
    record = json.loads(store.layout.files.read_bytes(path))
    record["renewed"] -= by
    store.layout.files.write_atomic(path, json.dumps(record).encode())
    return record


def test_a_lease_is_one_driver_per_sweep_and_a_killed_holders_lease_is_taken_once_stale(s3, short_lease):
    uri, env = s3
    store = Store(uri("leases-killed"))
    with SweepLock(store, "s") as mine:
        assert mine.record()["owner"] == mine.me["owner"]
        with pytest.raises(SweepLocked, match=r"is being run by pid \d+"):
            SweepLock(store, "s").acquire()
    assert SweepLock(store, "s").holder() is None  # released: the lease is gone
    proc = holder(uri("leases-killed"), env | short_lease)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    with pytest.raises(SweepLocked):  # its lease is still fresh: refused at once, no waiting
        SweepLock(store, "s").acquire()
    backdate(store, 2 * lock_module.LEASE_S)  # as it reads once its holder has not renewed for two leases
    started = time.monotonic()
    with SweepLock(store, "s") as taken:
        assert taken.record()["owner"] == taken.me["owner"]
    assert time.monotonic() - started >= lock_module.LEASE_S / 2  # it watched the stale lease before taking it


def test_a_live_holder_keeps_a_lease_that_looks_stale_to_a_contender_because_it_renews(s3, short_lease):
    uri, env = s3
    store = Store(uri("leases-live"))
    proc = holder(uri("leases-live"), env | short_lease)
    try:
        backdate(store, 2 * lock_module.LEASE_S)  # the contender's clock runs ahead of the holder's
        with pytest.raises(SweepLocked):  # the holder renewed while it watched
            SweepLock(store, "s").acquire()
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)


CONTENDER = """
import sys
from augworth.results import Store
from augworth.orchestrator.lock import SweepLock, SweepLocked
sys.stdin.readline()
try:
    SweepLock(Store(sys.argv[1]), "s").acquire()
    print("won", flush=True)
except SweepLocked:
    print("lost", flush=True)
sys.stdin.read()
"""


def test_of_drivers_racing_for_a_free_lease_one_takes_it(s3):
    uri, env = s3
    racers = [subprocess.Popen([sys.executable, "-c", CONTENDER, uri("leases-race")], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True, env=env) for _ in range(4)]
    try:
        for proc in racers:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        assert sorted(proc.stdout.readline().strip() for proc in racers) == ["lost", "lost", "lost", "won"]
    finally:
        for proc in racers:
            proc.stdin.close()
            proc.wait(timeout=60)
