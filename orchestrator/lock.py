"""One driver per sweep: a lock file in the sweep folder naming its holder (host and pid).

A second `run` of the same sweep is refused with the holder's name (exit 2). A lock left by a driver that
died on this host (its pid is gone) is stale and taken over; a lock held from another host cannot be
checked from here, so the message says which file to remove once the user knows that driver is gone.

Taking the lock is atomic on a local store: the record is written to a temp file first and hard-linked to
the lock's name, which fails where a lock exists, so no one ever reads a half-written lock. Taking over a
stale lock happens under an flock on `.lock.guard` (released by the kernel if its holder dies), so two
drivers that both find the lock stale cannot both take it: the second finds the first's live lock.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import socket
import uuid
from collections.abc import Iterator
from typing import Any

from results import Store, StoreError

LOCK_NAME = ".lock"


class SweepLocked(StoreError):
    """Another live driver holds the sweep."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class SweepLock:
    def __init__(self, store: Store, sweep: str) -> None:
        self.store, self.sweep = store, sweep
        self.path = f"{store.sweep_dir(sweep)}/{LOCK_NAME}"
        self.me = {"host": socket.gethostname(), "pid": os.getpid()}
        self.held = False

    def holder(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.store.files.read_bytes(self.path))
        except (FileNotFoundError, OSError, ValueError):
            return None

    def acquire(self) -> SweepLock:
        record = json.dumps(self.me | {"since": dt.datetime.now(dt.UTC).isoformat()}).encode()
        self.store.fs.create_dir(self.store.sweep_dir(self.sweep), recursive=True)
        if self.store.local:
            if not self._link(record):
                with self._guard():  # one takeover at a time; the lock is judged again inside
                    self._refuse_unless_stale()
                    self.store.files.write_atomic(self.path, record)  # replaces the stale one
        else:  # object stores have no exclusive create: check, then put (best effort)
            if self.holder() is not None:
                self._refuse_unless_stale()
            self.store.files.write_atomic(self.path, record)
        self.held = True
        return self

    def _link(self, record: bytes) -> bool:
        """Create the lock with its whole record in one step; False where a lock exists."""
        tmp = f"{self.path}.{uuid.uuid4().hex[:8]}.tmp"
        with open(tmp, "wb") as f:
            f.write(record)
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            os.remove(tmp)

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        fd = os.open(f"{self.path}.guard", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # waits for a takeover in progress; the kernel frees it on death
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def _refuse_unless_stale(self) -> None:
        holder = self.holder() or {}
        same_host = holder.get("host") == self.me["host"]
        if same_host and isinstance(holder.get("pid"), int) and _alive(holder["pid"]):
            raise SweepLocked(f"sweep {self.sweep!r} is being run by pid {holder['pid']} on {holder['host']} "
                              f"(since {holder.get('since', '?')})")
        if holder and not same_host:
            raise SweepLocked(f"sweep {self.sweep!r} is locked by pid {holder.get('pid')} on {holder.get('host')}; "
                              f"if that driver is gone, remove {self.path}")

    def release(self) -> None:
        if self.held and (self.holder() or {}).get("pid") == self.me["pid"]:
            self.store.files.delete(self.path)
        self.held = False

    def __enter__(self) -> SweepLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
