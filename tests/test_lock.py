"""One driver per sweep, with real processes: an OS lock that every PID namespace sees and that frees itself when
its holder dies, however it dies; a lease on object stores (an S3 server on loopback: tests/test_object_store.py).

The PID-namespace tests run the second driver under `unshare --pid --fork --mount-proc` (root, Linux), in which
it has pid 1 and the same host name: the case where a lock that recorded only a host and a pid was judged stale
(and then named pid 1, which always looks alive).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import pytest
from conftest import NAMESPACE, ROOT, unshare_works

from augworth.orchestrator.lock import SweepLock, SweepLocked
from augworth.results import Store

ENV = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"PYTHONPATH": str(ROOT)}

HOLDER = """
import sys
from augworth.results import Store
from augworth.orchestrator.lock import SweepLock, SweepLocked
store = Store(sys.argv[1])
try:
    lock = SweepLock(store, "s").acquire()
except SweepLocked as exc:
    print("refused:", exc, flush=True)
    sys.exit(2)
print("held", lock.me["pid"], lock.me.get("pid_namespace"), flush=True)
sys.stdin.read()  # holds until its stdin closes, or until it is killed
lock.release()
"""


def holder(store_path, *wrap: str) -> subprocess.Popen:
    """A process that takes the sweep's lock and holds it; `wrap`: a command it runs under (unshare)."""
    return subprocess.Popen([*wrap, sys.executable, "-c", HOLDER, str(store_path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=ENV, start_new_session=True)


needs_unshare = pytest.mark.skipif(not unshare_works(), reason="unshare --pid needs root and Linux namespaces")


def test_one_driver_per_sweep_in_one_process_and_a_released_sweep_is_free(tmp_path):
    store = Store(tmp_path)
    with SweepLock(store, "s") as lock:
        with pytest.raises(SweepLocked, match=rf"being run by pid {os.getpid()} on {socket.gethostname()}"):
            SweepLock(store, "s").acquire()  # another driver in this very process too
        assert SweepLock(store, "other").acquire().held  # other sweeps are free
        assert SweepLock(store, "s").holder()["pid"] == os.getpid()
    assert SweepLock(store, "s").holder() is None and SweepLock(store, "s").dead_holder() is None
    assert lock.record() is None  # released cleanly: no record, so nobody reads a dead driver into it
    SweepLock(store, "s").acquire().release()


@pytest.mark.parametrize("left", ["this process's pid and host", "pid 1 on this host", "another host"])
def test_a_record_that_no_live_driver_holds_never_blocks(tmp_path, left):
    # what a driver that died leaves: its record, no lock. Judged by the OS lock, not by the pid it names: a
    # restarted container's driver may have the dead one's pid, and pid 1 always looks alive.
    store = Store(tmp_path)
    (tmp_path / "s").mkdir()
    record = {"this process's pid and host": {"host": socket.gethostname(), "pid": os.getpid()},
              "pid 1 on this host": {"host": socket.gethostname(), "pid": 1},
              "another host": {"host": "elsewhere", "pid": 4242}}[left]
    (tmp_path / "s" / ".lock").write_text(json.dumps(record))
    assert SweepLock(store, "s").holder() is None and SweepLock(store, "s").dead_holder() == record
    with SweepLock(store, "s") as lock:
        assert lock.holder()["pid"] == os.getpid()


def test_a_driver_killed_with_sigkill_frees_its_sweep_and_leaves_its_record(tmp_path):
    store = Store(tmp_path)
    proc = holder(tmp_path)
    assert proc.stdout.readline().startswith("held")
    with pytest.raises(SweepLocked, match=rf"being run by pid {proc.pid} on {socket.gethostname()}"):
        SweepLock(store, "s").acquire()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert SweepLock(store, "s").dead_holder()["pid"] == proc.pid  # `status` says a driver died
    with SweepLock(store, "s"):
        pass


@needs_unshare
def test_the_lock_holds_across_pid_namespaces_with_one_host_name_and_frees_itself_there(tmp_path):
    store = Store(tmp_path)
    outside = holder(tmp_path)
    assert outside.stdout.readline().startswith("held")
    inside = holder(tmp_path, *NAMESPACE)  # same host name, its own pids: it would see no process `outside.pid`
    line = inside.stdout.readline()
    assert inside.wait(timeout=60) == 2 and f"being run by pid {outside.pid} on {socket.gethostname()}" in line
    outside.stdin.close()
    assert outside.wait(timeout=60) == 0
    # now a driver in a namespace holds it (pid 1 there); one in a third namespace is refused, then takes it once
    # the first is killed
    first = holder(tmp_path, *NAMESPACE)
    held = first.stdout.readline().split()
    assert held[:2] == ["held", "1"] and held[2] != SweepLock(store, "s").me.get("pid_namespace")
    third = holder(tmp_path, *NAMESPACE)
    assert third.wait(timeout=60) == 2 and "being run by pid 1 on" in third.stdout.read()
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    again = holder(tmp_path, *NAMESPACE)
    assert again.stdout.readline().startswith("held")  # no stale lock to delete by hand
    again.stdin.close()
    assert again.wait(timeout=60) == 0


CONTENDER = """
import sys
from augworth.results import Store
from augworth.orchestrator.lock import SweepLock, SweepLocked
store, lock = Store(sys.argv[1]), None
for line in sys.stdin:
    if line.strip() == "go":
        try:
            lock = SweepLock(store, "s").acquire()
            print("won", flush=True)
        except SweepLocked:
            print("lost", flush=True)
    else:
        if lock is not None:
            lock.release()
        lock = None
        print("released", flush=True)
"""


@pytest.mark.parametrize("start", ["free", "left by a dead driver"])
def test_of_many_drivers_racing_for_a_sweep_exactly_one_takes_it(tmp_path, start):
    # real processes, started together by a line on their stdin, each holding what it won until all have tried
    contenders = [subprocess.Popen([sys.executable, "-c", CONTENDER, str(tmp_path)], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True, env=ENV, cwd=ROOT) for _ in range(8)]
    (tmp_path / "s").mkdir()
    try:
        for _ in range(12):
            if start != "free":
                (tmp_path / "s" / ".lock").write_text(json.dumps({"host": socket.gethostname(), "pid": 1}))
            for proc in contenders:
                proc.stdin.write("go\n")
                proc.stdin.flush()
            outcomes = [proc.stdout.readline().strip() for proc in contenders]
            assert outcomes.count("won") == 1, outcomes
            for proc in contenders:
                proc.stdin.write("release\n")
                proc.stdin.flush()
            assert [proc.stdout.readline().strip() for proc in contenders] == ["released"] * len(contenders)
            assert SweepLock(Store(tmp_path), "s").holder() is None
    finally:
        for proc in contenders:
            proc.stdin.close()
            proc.wait(timeout=60)


def test_a_file_uri_store_is_a_local_folder_with_the_os_lock(tmp_path):
    store = Store(f"file://{tmp_path}")
    assert store.local and store.layout.root == str(tmp_path.resolve())
    with SweepLock(store, "s"), pytest.raises(SweepLocked):
        SweepLock(Store(tmp_path), "s").acquire()  # the same folder by its path: the same lock
    assert (tmp_path / "s" / ".lock").exists() and not (tmp_path / "s" / ".lease").exists()
