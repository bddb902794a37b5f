"""Start-up and exit of a sweep driver: the fixed cost every small run pays (`python -m bench.startup`).

- A new sweep on a private local Ray: Ray starts (~5 s of processes coming up) while the plan is built on a
  thread (~3 s, mostly importing torch for the registries) and the driver's Tune imports load. Everything the
  user can get wrong in the spec's text is checked before Ray starts; a bad name found by the planner stops
  the fresh Ray again before the one-line error. An existing sweep (resume, extend, a finished one) plans
  first, as before: it may have nothing to run, and then Ray never starts.
- The command line leaves with `os._exit` once Ray is shut down and its output flushed: Python's own
  teardown of torch's modules costs about a second and has nothing left to do.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from results import Store

T = TypeVar("T")

# Set by the `augworth` command line (`cli.main`). In-process callers (typer's test runner, notebooks) plan
# first: a Ray started for a spec whose names then fail would cost them seconds for a one-line error.
OVERLAP = False


def starts_local_ray(address: str | None) -> bool:
    """Whether a run would start a private local Ray (no cluster named, none running in this process)."""
    if address or os.environ.get("RAY_ADDRESS"):
        return False
    ray = sys.modules.get("ray")
    return not (ray is not None and ray.is_initialized())


def _warm_imports() -> None:
    """What the driver imports anyway once it runs the plan (Tune ~1 s), loaded while Ray comes up."""
    import ray.tune  # noqa: F401

    import trainables.trainable  # noqa: F401


def plan_while_ray_starts(make_plan: Callable[[], T], *, sweep: str, store: Store, address: str | None) -> T:
    """`make_plan()`, overlapped with starting a private local Ray where the sweep is new in `store`."""
    if not OVERLAP or not starts_local_ray(address) or store.has_sweep(sweep):
        return make_plan()
    outcome: dict[str, Any] = {}

    def plan() -> None:
        try:
            outcome["plan"] = make_plan()
            _warm_imports()
        except BaseException as exc:  # re-raised on the main thread, after Ray is stopped again
            outcome["error"] = exc

    thread = threading.Thread(target=plan, name="augworth-plan", daemon=True)
    thread.start()
    from .runner import connect

    try:
        connect(None)  # on the main thread: Ray sets its signal handlers there
    finally:
        thread.join()
    if "error" in outcome:
        import ray

        ray.shutdown()
        raise outcome["error"]
    result: T = outcome["plan"]
    return result


def fast_exit(code: int) -> None:
    """Leave now: Ray shut down, streams and log handlers flushed, Python's teardown skipped (see above)."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed or broken pipe: nothing left to say
            stream.flush()
    os._exit(code)
