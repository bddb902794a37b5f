"""A command that runs a sweep (`run`, `resume`, `demo`) runs as the child of a small supervisor process.

Why: when the private local Ray stops under the driver (`ray stop`, the out-of-memory killer, a crash), Ray's
C++ core worker ends the driver itself: at once with exit 1 where the raylet went (after Tune has printed
tracebacks), or after 60 s of waiting for a GCS that went, with Ray's internal errors. No handler of ours runs
in either case, so only another process can tell the user what happened.

The supervisor forks the driver before anything heavy is imported and learns from it (`DriverNews`, JSON
lines on a pipe) where its Ray's GCS listens and, for a private local Ray, the pids of its GCS and raylet. It
watches those processes (pidfds) and the GCS's port (a stopped GCS closes it at once, while its process may
linger for a minute). Once Ray is seen gone while the driver runs and nobody asked it to stop, a driver of a
private local Ray gets GRACE_S to end by itself and is then killed (nothing restarts that GCS); the supervisor
prints one line naming `augworth resume SWEEP` and exits with RAY_LOST. Finished cells are in the store by
then, and the sweep's lock freed itself with the driver (lock.py). On a cluster, whose GCS may come back
(fault tolerance), the driver is left to Ray's own timeout and only its exit is explained the same way.

Everything else passes through: the driver's exit code, its output (the same terminal), Ctrl-C (the
terminal signals both; the supervisor lets the driver handle it), SIGTERM and SIGHUP (forwarded); if the
supervisor is killed, the driver gets SIGTERM. Where the kernel has no pidfds (not Linux, or before 5.3) the
command runs unsupervised.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import sys
import time
from dataclasses import asdict, dataclass, field

RAY_LOST = 4  # exit code: Ray stopped under the driver; `augworth resume SWEEP` goes on
GRACE_S = 2.0  # how long a driver whose Ray is gone may take to end by itself
PROBE_S = 1.0  # how often the GCS's port is tried while the driver runs
_channel: int | None = None  # the driver's end of the pipe, where it has a supervisor


@dataclass(frozen=True)
class DriverNews:
    """What the driver tells its supervisor: one JSON line per event."""

    event: str  # "ray" (connected to Ray), "sweep" (which sweep it runs), "stopping" (it ends on purpose)
    pids: tuple[int, ...] = field(default=())  # event "ray": its private local Ray's GCS and raylet; () on a cluster
    gcs: str | None = None  # event "ray": the GCS's host:port
    sweep: str | None = None  # event "sweep"

    def line(self) -> bytes:
        return (json.dumps(asdict(self)) + "\n").encode()

    @classmethod
    def parse(cls, line: bytes) -> DriverNews:
        data = json.loads(line)
        return cls(event=data["event"], pids=tuple(data.get("pids") or ()), gcs=data.get("gcs"),
                   sweep=data.get("sweep"))


def tell(news: DriverNews) -> None:
    """From the driver: news for the supervisor, if there is one (else nothing)."""
    if _channel is not None:
        with contextlib.suppress(OSError):  # a supervisor that is gone has nothing to learn
            os.write(_channel, news.line())


def ray_processes(parent: int) -> tuple[int, ...]:
    """The pids of the GCS and raylet that `parent` started (a private local Ray's own processes)."""
    found = []
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    stat = f.read().decode(errors="replace")
            except OSError:
                continue
            name, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
            if int(rest[1]) == parent and name in ("gcs_server", "raylet"):
                found.append(int(entry))
    return tuple(sorted(found))


def supported() -> bool:
    return hasattr(os, "pidfd_open") and os.path.isdir("/proc")


def become_supervised() -> None:
    """Fork. The child, the driver, returns and runs the command; the parent watches it and exits with its code."""
    global _channel
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the driver
        os.close(read_end)
        _channel = write_end
        _die_with_parent()
        return
    os.close(write_end)
    os._exit(_watch(pid, read_end))


def _die_with_parent() -> None:
    """The driver gets SIGTERM when its supervisor dies (a `kill -9` of the command a user started)."""
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before the prctl
        os.kill(os.getpid(), signal.SIGTERM)


def gcs_answers(address: str) -> bool:
    """Whether something listens on the GCS's port (a stopped GCS closes it at once, before its process ends)."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except (OSError, ValueError):
        return False
    return True


class _Watch:
    """The supervisor's view of the driver and its Ray."""

    def __init__(self, child: int) -> None:
        self.child = child
        self.asked_to_stop = False  # Ctrl-C or a signal: Ray's processes got it too, their end is no news
        self.stopping = False  # the driver said it ends on purpose: Ray's end is part of that
        self.sweep: str | None = None
        self.gcs: str | None = None
        self.local = False  # a private local Ray (the driver started it): nothing restarts its GCS
        self.ray_fds: dict[int, int] = {}  # pidfd -> pid of the GCS and the raylet
        self.misses = 0  # GCS probes in a row that found nobody listening
        self.ray_gone: float | None = None  # when Ray's end was seen while the driver ran

    def hear(self, news: DriverNews) -> None:
        if news.event == "ray":
            self.gcs, self.local = news.gcs, bool(news.pids)
            for pid in news.pids:
                try:
                    self.ray_fds[os.pidfd_open(pid)] = pid
                except ProcessLookupError:
                    self.gone()
        elif news.event == "sweep":
            self.sweep = news.sweep
        elif news.event == "stopping":
            self.stopping = True

    def gone(self) -> None:
        if not (self.stopping or self.asked_to_stop) and self.ray_gone is None:
            self.ray_gone = time.monotonic()

    def probe(self) -> None:
        if self.gcs is None or self.stopping or self.ray_gone is not None:
            return
        self.misses = 0 if gcs_answers(self.gcs) else self.misses + 1
        if self.misses >= 2:
            self.gone()

    def give_up(self) -> bool:
        """Whether to end a driver that waits for a Ray that is gone (a cluster's GCS may come back: never)."""
        return (self.local and self.ray_gone is not None and not self.asked_to_stop
                and time.monotonic() >= self.ray_gone + GRACE_S)


def _watch(child: int, news_fd: int) -> int:
    watch = _Watch(child)

    def forward(signum: int, frame: object) -> None:
        watch.asked_to_stop = True
        if signum != signal.SIGINT:  # Ctrl-C reached the driver from the terminal already
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    child_fd, pending = os.pidfd_open(child), b""
    while True:
        timeout = PROBE_S if watch.gcs and watch.ray_gone is None else GRACE_S / 5 if watch.ray_gone else None
        watched = [child_fd, *watch.ray_fds] + ([news_fd] if news_fd >= 0 else [])
        ready, _, _ = select.select(watched, [], [], timeout)
        if child_fd in ready:
            break
        if news_fd in ready:
            data = os.read(news_fd, 65536)
            if not data:  # every copy of the driver's end is closed
                os.close(news_fd)
                news_fd = -1
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                watch.hear(DriverNews.parse(line))
        for fd in [fd for fd in watch.ray_fds if fd in ready]:
            del watch.ray_fds[fd]
            os.close(fd)
            watch.gone()
        if not ready:
            watch.probe()
        if watch.give_up():
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)  # its Ray is gone; it would wait 60 s for the GCS, then crash
            break
    _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    code = 128 - code if code < 0 else code  # killed by a signal: the shell's convention
    if watch.ray_gone is not None and not watch.asked_to_stop and code not in (0, 2, 3, RAY_LOST):
        ray = "the local Ray" if watch.local else f"the Ray cluster (GCS {watch.gcs})"
        resume = f"`augworth resume {watch.sweep}`" if watch.sweep else "`augworth resume SWEEP`"
        sys.stderr.write(f"augworth: {ray} stopped under the driver; finished cells are in the store, {resume} "
                         "runs the rest\n")
        sys.stderr.flush()
        return RAY_LOST
    return code
