"""Start-up and exit of a sweep driver: the fixed cost every small run pays (`python -m bench.startup`).

- A new sweep on a private local Ray with a local store: Ray starts (~5 s of processes coming up) while the
  plan is made in a forked child process (~3 s, mostly importing torch for the registries and loading the
  data set) and the driver's Tune imports load on a thread. Everything the user can get wrong in the spec's
  text is checked before Ray starts; a bad name found by the planner stops the fresh Ray again before the
  one-line error. An existing sweep (resume, extend) overlaps the same way when the counts of its done and
  failed cells say that cells are left (`may_have_cells_to_run`: no data loaded). A finished one plans first,
  in this process, finds nothing to run, and never starts Ray; so does one whose lock another driver holds,
  which is refused without Ray.
- Every caller takes this path (the command line, typer's runner, a notebook); the fork is taken only by a
  process that has not loaded torch (`worth_forking`), which the command line's driver never does.
- The driver never imports torch on that path: it plans in the child, hands Tune a reference to the
  trainable, and its rows arrive as plain values (`results.rows`). On a thread, the plan's imports held the
  GIL against `ray.init` (Ray up at ~8.7 s instead of ~6.4 s here).
- Trials run in the workers Ray starts ahead (`runner.trials_in_prestarted_workers`).
- The command line leaves with `os._exit` once Ray is shut down and its output flushed: Python's own
  teardown of torch's modules costs about a second and has nothing left to do.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from augworth.results import Store
from augworth.search_spaces import Spec, grid_size

from .lock import SweepLock

T = TypeVar("T")

def starts_local_ray(address: str | None) -> bool:
    """Whether a run would start a private local Ray (no cluster named, none running in this process)."""
    if address or os.environ.get("RAY_ADDRESS"):
        return False
    ray = sys.modules.get("ray")
    return not (ray is not None and ray.is_initialized())


def worth_forking() -> bool:
    """Whether planning in a forked child pays here: only in a process that has not loaded torch.

    What the overlap hides is mostly the plan's import of torch (~2-3 s); a process that already holds it (a
    notebook, a test session) plans in ~1 s, and its fork would copy torch's OpenMP and allocator state into a
    child that then runs torch (a pool a fork does not carry). The command line never loads torch in the
    driver, so it overlaps; a Python caller that has not touched torch takes the same path.
    """
    return "torch" not in sys.modules


def may_have_cells_to_run(spec: Spec, store: Store, *, retry_failed: bool) -> bool:
    """Whether an existing sweep may have cells left, from counts alone: a plan needs the data set (torch,
    ~3-5 s here), which is worth overlapping with Ray's start only where Ray will be needed. A wrong guess
    costs time, never a cell: a sweep guessed finished plans first and starts Ray if cells are left after
    all; one guessed unfinished that has none starts Ray for nothing. A search may always have trials left."""
    if spec.search is not None:
        return True
    settled = len(store.done_keys(spec.name)) + (0 if retry_failed else len(store.failures(spec.name)))
    return settled < grid_size(spec)


def _warm_imports() -> None:
    """What the driver imports anyway once it runs the plan (Tune ~1 s), loaded while Ray comes up."""
    import ray.tune  # noqa: F401

    import augworth.trainables.trainable  # noqa: F401


def _plan_in_child(make_plan: Callable[[], T], conn: Any) -> None:
    from ray import cloudpickle  # a plan's studies hold closures (`Study.make_cell`): pickle cannot send them

    try:
        outcome: tuple[str, Any] = ("plan", make_plan())
    except BaseException as exc:  # handed to the parent, which stops its fresh Ray and raises it
        outcome = ("error", exc)
    try:
        data = cloudpickle.dumps(outcome)
    except Exception as exc:  # what cannot be pickled still reaches the user as one line
        data = cloudpickle.dumps(("error", RuntimeError(f"the planning process could not hand over its "
                                                        f"{outcome[0]}: {exc.__class__.__name__}: {exc}")))
    conn.send_bytes(data)
    conn.close()


def plan_while_ray_starts(make_plan: Callable[[], T], *, spec: Spec, store: Store, address: str | None,
                          retry_failed: bool = False) -> T:
    """`make_plan()`, overlapped with starting a private local Ray where the sweep is new in `store` or may
    have cells left.

    The plan is made in a forked child (see the module's docstring), forked before Ray starts, so it shares no
    Ray state; it only reads the store. The threads already running here (numpy's BLAS pool, pyarrow's
    jemalloc) handle a fork themselves.
    """
    if not worth_forking() or not starts_local_ray(address) or not store.local:
        return make_plan()  # (an object store's client may run threads of its own: no fork then)
    if store.has_sweep(spec.name) and (SweepLock(store, spec.name).holder() is not None
                                       or not may_have_cells_to_run(spec, store, retry_failed=retry_failed)):
        return make_plan()  # finished, or held by a live driver: refused without Ray
    import multiprocessing

    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_plan_in_child, args=(make_plan, send), name="augworth-plan", daemon=True)
    child.start()
    send.close()
    warm = threading.Thread(target=_warm_imports, name="augworth-imports", daemon=True)
    warm.start()
    from .runner import connect

    try:
        connect(None)  # on the main thread: Ray sets its signal handlers there
        warm.join()
        try:
            kind, value = pickle.loads(receive.recv_bytes())
        except EOFError:  # killed (out of memory?) before it could answer
            child.join()
            kind, value = "error", RuntimeError(f"the planning process died (exit code {child.exitcode})")
    except BaseException:
        child.kill()
        raise
    finally:
        child.join()
    if kind == "error":
        import ray

        from .supervise import DriverNews, tell

        tell(DriverNews("stopping"))  # the fresh Ray ends on purpose
        ray.shutdown()
        raise value
    result: T = value
    return result


def fast_exit(code: int) -> None:
    """Leave now: Ray shut down, streams and log handlers flushed, Python's teardown skipped (see above).

    `ray.shutdown()` stays, though it costs ~1.5 s here: a private Ray's processes do die with the driver, but
    its dashboard and runtime-env agents were seen to outlive it, orphaned and still using CPU.
    """
    from .supervise import DriverNews, tell

    tell(DriverNews("stopping"))  # Ray's processes end now on purpose
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed or broken pipe: nothing left to say
            stream.flush()
    os._exit(code)
