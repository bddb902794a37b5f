"""One driver per sweep: a lock file in the sweep folder naming its holder (host and pid).

A second `run` of the same sweep is refused with the holder's name (exit 2). A lock left by a driver that
died on this host (its pid is gone) is stale and taken over; a lock held from another host cannot be
checked from here, so the message says which file to remove once the user knows that driver is gone.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
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
        self.store.fs.create_dir(self.store.sweep_dir(self.sweep), recursive=True)  # for os.open below
        if self.store.local:
            try:  # O_EXCL: of two drivers racing for a free sweep exactly one creates the file
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                self._take_over_if_stale(record)
            else:
                with os.fdopen(fd, "wb") as f:
                    f.write(record)
        else:  # object stores have no exclusive create: check, then put (best effort)
            if self.holder() is not None:
                self._take_over_if_stale(record)
            else:
                self.store.files.write_atomic(self.path, record)
        self.held = True
        return self

    def _take_over_if_stale(self, record: bytes) -> None:
        holder = self.holder() or {}
        same_host = holder.get("host") == self.me["host"]
        if same_host and isinstance(holder.get("pid"), int) and _alive(holder["pid"]):
            raise SweepLocked(f"sweep {self.sweep!r} is being run by pid {holder['pid']} on {holder['host']} "
                              f"(since {holder.get('since', '?')})")
        if holder and not same_host:
            raise SweepLocked(f"sweep {self.sweep!r} is locked by pid {holder.get('pid')} on {holder.get('host')}; "
                              f"if that driver is gone, remove {self.path}")
        self.store.files.write_atomic(self.path, record)  # stale (dead pid on this host, or unreadable): take over
        if (self.holder() or {}).get("pid") != self.me["pid"]:
            raise SweepLocked(f"sweep {self.sweep!r}: another driver took the stale lock first")

    def release(self) -> None:
        if self.held and (self.holder() or {}).get("pid") == self.me["pid"]:
            self.store.files.delete(self.path)
        self.held = False

    def __enter__(self) -> SweepLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
