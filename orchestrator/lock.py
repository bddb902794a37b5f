"""One driver per sweep: an OS lock on POSIX stores, a renewed lease on object stores.

POSIX stores (a local path, NFS, or a `file://` URI): `<sweep>/.lock` is locked with an open-file-description
lock (Linux's F_OFD_SETLK; `flock` where there is none) for as long as the driver runs. The kernel holds it, or
the NFS server for every client that mounts the store: it is seen from every process, PID namespace and
container that opens the file, on every host, and it ends with its holder however that dies (kill -9, the
out-of-memory killer, a lost container). No lock is ever judged stale by a pid, so a holder in another PID
namespace with the same host name, or a restarted container whose driver got the dead one's pid, cannot fool
it. The file is never deleted (a waiter and a newcomer could lock two files of one name); it holds the
holder's record (host, boot id, PID namespace, pid, process start time, command, since) for messages only,
emptied on a clean release, so a record in a file nobody locks is a driver that died.

Object stores (s3://, gs://, ...): pyarrow offers neither locks nor an exclusive create, so a lease,
`<sweep>/.lease`. The holder writes its record with a fresh owner id and renews it every LEASE_S / 4 from a
thread while it runs. A contender refuses while the lease's time is within LEASE_S of its own clock; where it
looks older, the contender still waits until it has seen the lease unchanged for LEASE_S / 2 of its own time
before it takes it, so a holder whose clock runs behind is not robbed. Taking is write, wait SETTLE_S, read
back: of two drivers that took a free lease at once, the one whose write landed last wins and the other
refuses. Limits, stated in docs/cluster.md: a clock ahead of the holder's by more than LEASE_S makes a dead lease
look fresh (refused until it is older by that clock); a write delayed by more than SETTLE_S can still let two
drivers in; a holder that cannot renew for LEASE_S (a network partition) may lose its sweep to another, and
learns it at its next renewal (it logs an error; its cells are still written once each, as resume skips done
cells, but both drivers train).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import logging
import os
import socket
import struct
import sys
import threading
import time
import uuid
from typing import Any

from augworth.results import Store, StoreError
from augworth.search_spaces.secrets import redact

LOCK_NAME = ".lock"
LEASE_NAME = ".lease"
LEASE_S = float(os.environ.get("AUGWORTH_LEASE_S", "60"))  # an object-store lease not renewed for this long is stale
SETTLE_S = min(2.0, LEASE_S / 30)  # between a lease's write and its read-back: racing writes have landed by then
log = logging.getLogger("augworth")


class SweepLocked(StoreError):
    """Another live driver holds the sweep."""


def _read(path: str) -> str | None:
    with contextlib.suppress(OSError), open(path) as f:
        return f.read().strip()
    return None


def identity() -> dict[str, Any]:
    """Who this driver is, for the messages of drivers it refuses (never for deciding liveness)."""
    me: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid(),
                          "command": redact(" ".join(["augworth", *sys.argv[1:3]]))}
    me["boot_id"] = _read("/proc/sys/kernel/random/boot_id")
    with contextlib.suppress(OSError):
        me["pid_namespace"] = os.readlink("/proc/self/ns/pid")
    stat = _read("/proc/self/stat")
    if stat:  # field 22: start time in clock ticks after boot; with boot_id it names this process uniquely
        me["start_ticks"] = int(stat[stat.rindex(")") + 2 :].split()[19])
    return me | {"since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}


def describe(record: dict[str, Any] | None) -> str:
    if not record:
        return "another driver (its record is being written)"
    where = f"pid {record.get('pid')} on {record.get('host')}"
    extra = ", ".join(str(record[k]) for k in ("command", "pid_namespace") if record.get(k))
    return f"{where} ({extra}{', ' if extra else ''}since {record.get('since', '?')})"


# ----- the OS lock ----------------------------------------------------------------------------------

_OFD = hasattr(fcntl, "F_OFD_SETLK")  # Linux >= 3.15


def _ofd(fd: int, command: int, kind: int) -> int:
    """An open-file-description lock request on the whole file; returns the l_type the kernel answers."""
    answer = fcntl.fcntl(fd, command, struct.pack("hhqqi4x", kind, os.SEEK_SET, 0, 0, 0))
    return struct.unpack("hhqqi4x", answer)[0]


def _try_lock(fd: int) -> bool:
    try:
        if _OFD:
            _ofd(fd, fcntl.F_OFD_SETLK, fcntl.F_WRLCK)
        else:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
        raise
    return True


def _is_locked(path: str) -> bool:
    """Whether some open file description, anywhere, holds the lock on `path` (without taking it)."""
    try:  # read-only is enough to ask (and to flock): `status` may run as a user who can only read the store
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        if _OFD:
            return _ofd(fd, fcntl.F_OFD_GETLK, fcntl.F_WRLCK) != fcntl.F_UNLCK
        if not _try_lock(fd):  # flock has no query: take it and let go (a racing driver may be refused once)
            return True
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


class SweepLock:
    """`with SweepLock(store, sweep):` the body runs as the sweep's one driver, or SweepLocked is raised."""

    def __init__(self, store: Store, sweep: str) -> None:
        self.store, self.sweep = store, sweep
        self.local = store.local
        self.path = f"{store.layout.sweep_dir(sweep)}/{LOCK_NAME if self.local else LEASE_NAME}"
        self.me = identity()
        self.held = False
        self._fd: int | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self.lost = False  # an object-store lease that another driver took while this one held it

    # ----- what others see ---------------------------------------------------------------------
    def record(self) -> dict[str, Any] | None:
        """The record in the lock or lease file, whoever wrote it (None: none, or unreadable)."""
        try:
            data = json.loads(self.store.layout.files.read_bytes(self.path) or b"null")
        except (FileNotFoundError, OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def holder(self) -> dict[str, Any] | None:
        """The live holder's record ({} while it is being written), or None where no driver holds the sweep."""
        if self.local:
            return (self.record() or {}) if _is_locked(self.path) else None
        record = self.record()
        return record if record is not None and not self._stale(record) else None

    def dead_holder(self) -> dict[str, Any] | None:
        """The record of a driver that ended without releasing the sweep (killed, crashed), if any."""
        record = self.record()
        return record if record and self.holder() is None else None

    # ----- taking and letting go ---------------------------------------------------------------
    def acquire(self) -> SweepLock:
        self.store.layout.fs.create_dir(self.store.layout.sweep_dir(self.sweep), recursive=True)
        (self._acquire_os_lock if self.local else self._acquire_lease)()
        self.held = True
        return self

    def release(self) -> None:
        if self.local and self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)  # a record only while held: one left behind is a driver that died
            os.close(self._fd)  # closing the last descriptor of the open file lets the lock go
            self._fd = None
        elif not self.local and self.held:
            self._stop.set()
            if self._renewer is not None:
                self._renewer.join()
            if not self.lost and (self.record() or {}).get("owner") == self.me.get("owner"):
                self.store.layout.files.delete(self.path)
        self.held = False

    def __enter__(self) -> SweepLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _refuse(self, record: dict[str, Any] | None) -> SweepLocked:
        return SweepLocked(f"sweep {self.sweep!r} is being run by {describe(record)}")

    def _acquire_os_lock(self) -> None:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            if not _try_lock(fd):
                os.close(fd)
                raise self._refuse(self.record())
            try:  # the file locked must still be the one of that name (a user may have removed it by hand)
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(self.me).encode(), 0)
        os.fsync(fd)
        self._fd = fd

    # ----- the object-store lease --------------------------------------------------------------
    def _stale(self, record: dict[str, Any]) -> bool:
        return time.time() - float(record.get("renewed", 0)) > LEASE_S

    def _write_lease(self) -> None:
        self.store.layout.files.write_atomic(self.path, json.dumps(self.me | {"renewed": time.time()}).encode())

    def _acquire_lease(self) -> None:
        self.me["owner"] = uuid.uuid4().hex
        record = self.record()
        if record is not None:
            if not self._stale(record):
                raise self._refuse(record)
            # stale by this clock: taken only once seen unchanged for half a lease, so a live holder whose clock
            # runs behind this one's (it renews every quarter lease) keeps it
            time.sleep(LEASE_S / 2)
            if self.record() != record:
                raise self._refuse(self.record())
        self._write_lease()
        time.sleep(SETTLE_S)  # a racing driver's write lands in this time: the last one wins, the others refuse
        if (self.record() or {}).get("owner") != self.me["owner"]:
            raise self._refuse(self.record())
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew, name="augworth-lease", daemon=True)
        self._renewer.start()

    def _renew(self) -> None:
        while not self._stop.wait(LEASE_S / 4):
            try:
                if (self.record() or {}).get("owner") != self.me["owner"]:
                    self.lost = True
                    log.error("the lease on sweep %r was taken by %s: this driver's renewals stopped for longer "
                              "than %.0f s (a network partition?); both drivers may now train its cells (each "
                              "is still written once)", self.sweep, describe(self.record()), LEASE_S)
                    return
                self._write_lease()
            except OSError as exc:  # the store is unreachable for now: try again at the next renewal
                log.warning("could not renew the lease on sweep %r: %s", self.sweep, exc)
