"""Run a plan on Ray Tune: cells packed into trials, actors reused, rows written by the driver.

Without an address (or RAY_ADDRESS) a private local Ray starts (`address="local"`, so a stray cluster on
the machine is never joined) with the dashboard off. If Ray is already initialised in this process (tests,
notebooks) it is used as it is.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from augworth.results import Store

from .lock import SweepLock
from .plan import Plan
from .progress import SweepProgress
from .resources import cell_bundle, concurrent_cells, holds_a_cell

# Tune's per-trial loggers (JSON, CSV, TensorBoard) cost tens of ms per trial; the store is our record.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
# Ray Tune warns about this on every run; our trials report once per cell by design.
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "1000")
# A trial's lost worker is one line of ours (`StoreWriter.on_trial_recover`/`on_trial_error`), not Tune's traceback:
# cells catch their own errors, so what reaches Tune is a dead process, and its traceback is Ray's internals.
os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")


MAX_TRIALS_PER_FIT = 256  # trials per Tuner.fit; with up to 64 cells a trial, 16k cells a round


@dataclass
class RunSummary:
    sweep: str
    total: int
    skipped: int
    done: int
    failed: int
    failed_total: int  # failure records in the sweep at the end, this run's and earlier ones
    unfinished: int = 0  # cells of this run neither done nor failed: interrupted (Ctrl-C) or lost trials
    search: dict[str, int] | None = None  # search trials settled by this run: complete, pruned, failed
    search_open: int = 0  # studies that did not reach their trials (interrupted, or too many failed trials)

    @property
    def exit_code(self) -> int:
        return 3 if self.failed_total or self.unfinished or self.search_open else 0


def code_revision() -> str | None:
    """The git commit of the code that runs, where there is one (else the installed version stands alone)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


# Ray notes that a local cluster uses token authentication (we keep it on), and Tune's result grid complains
# that the per-trial result files we turned off are missing; neither is news to an augworth user.
QUIET_LOGGERS = ("ray._private.authentication.authentication_token_setup", "ray.tune.analysis.experiment_analysis")


def connect(address: str | None = None) -> None:
    import ray

    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    common: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address:
        ray.init(address=address, **common)
    else:
        ray.init(address="local", include_dashboard=False, **common)
    from .supervise import DriverNews, ray_processes, tell

    # the supervisor (cli.main) watches them: a private Ray's own processes are this driver's children
    tell(DriverNews("ray", pids=() if address else ray_processes(os.getpid()),
                    gcs=ray.get_runtime_context().gcs_address))


def checkpoint_dir(store: Store, sweep: str, configured: str | None) -> str:
    """Where running cells checkpoint: the spec's choice, else inside the sweep folder (a URI stays a URI)."""
    return configured or store.location(sweep, "checkpoints")


def warn_if_unshared(path: str, nodes: int, what: str = "checkpoint storage",
                     loss: str = "a restarted cell on another node starts over") -> None:
    if nodes > 1 and "://" not in path:
        logging.getLogger("augworth").warning(
            "%s %s is a local path on a %d-node cluster: every node must reach it (a shared file system), or %s",
            what, path, nodes, loss)


MAX_CELLS_PER_TRIAL = 64


def pack_cells(cells: list[Any], slots: int, requested: int | None = None) -> list[list[Any]]:
    """Cells into Tune trials, one chunk per trial, in the order Tune starts them.

    Guided self-scheduling: each chunk takes 1/(2·slots) of what is left (at most MAX_CELLS_PER_TRIAL), so
    early trials are long (trial start-up is noise) and the last ones hold single cells (no slot idles while
    another finishes a long chunk). `execution.cells_per_trial` fixes the size instead.
    """
    chunks, i = [], 0
    while i < len(cells):
        size = requested or min(MAX_CELLS_PER_TRIAL, math.ceil((len(cells) - i) / (2 * max(1, slots))))
        chunks.append(cells[i : i + size])
        i += size
    return chunks


def run_plan(plan: Plan, store: Store, *, address: str | None = None, show_progress: bool = True,
             log_cells: bool = False) -> RunSummary:
    """Under the sweep's lock: freeze the spec in the store, run every pending cell, return the counts.

    `log_cells` (without the live display): one line per cell event on stderr, for logs of batch jobs.
    """
    from .supervise import DriverNews, tell

    tell(DriverNews("sweep", sweep=plan.spec.name))
    check_gpus(plan, address)
    with SweepLock(store, plan.spec.name):
        from .plan import plan_again_if_frozen_changed

        plan = plan_again_if_frozen_changed(plan, store)  # what is frozen is only ever compared under the lock
        return _run_locked(plan, store, address=address, show_progress=show_progress, log_cells=log_cells)


def check_gpus(plan: Plan, address: str | None) -> None:
    """Refuse a sweep whose cells want more GPUs than the cluster has, before anything is written or started:
    else Tune waits for ever for a resource that never comes. Without an address the local Ray would get this
    machine's devices, so those are counted (before Ray prints anything); with one, the cluster's."""
    wanted = plan.spec.execution.gpus_per_cell
    if wanted <= 0 or not (plan.pending or plan.studies):
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        import ray

        connect(address)
        have, where = float(ray.cluster_resources().get("GPU", 0)), f"the Ray cluster at {address}"
    else:
        import torch

        have, where = float(torch.cuda.device_count()), "this machine (no --address: a local Ray)"
    if have < wanted:
        from augworth.search_spaces import spec_error

        raise spec_error(f"each cell asks for {wanted:g} GPUs but {where} has {have:g}; "
                         "say gpus_per_cell: 0 to train on CPUs", text=plan.text, source=plan.source,
                         loc=("execution", "gpus_per_cell"))


def trials_in_prestarted_workers() -> None:
    """Tune starts each trial actor with the runtime env {"env_vars": {"PL_DISABLE_FORK": "1"}}, for PyTorch
    Lightning's forking trainer (Ray issue #28197), which augworth does not use. A runtime env other than the
    job's keeps Ray from giving the trial one of the workers it starts ahead (one per CPU, at `ray.init`): the
    trial then waits for a new worker process, ~1.2 s here (`python -m bench.startup`)."""
    from ray.tune.execution import class_cache

    getattr(class_cache, "DEFAULT_ENV_VARS", {}).pop("PL_DISABLE_FORK", None)


def _run_locked(plan: Plan, store: Store, *, address: str | None, show_progress: bool,
                log_cells: bool) -> RunSummary:
    trials_in_prestarted_workers()
    plan = freeze(plan, store)
    sweep, skipped = plan.spec.name, len(plan.cells) - len(plan.pending)
    search = None
    if plan.studies:
        from .search import start_search

        search = start_search(plan.spec, plan.studies, store, retry_failed=plan.retry_failed)
    searched_total, searched_done = search.cell_counts() if search is not None else (0, 0)
    progress = SweepProgress(len(plan.cells) + searched_total, already_done=skipped + searched_done,
                             enabled=show_progress, log_events=log_cells)
    progress.done = 0
    design_open = plan.spec.design is not None and _design_open(plan, store)
    if (plan.pending and (plan.spec.design is None or design_open)) or (search is not None and not search.idle()):
        connect(address)
        progress.log(f"sweep {sweep}: {len(plan.pending)} cells to run, {skipped} already done"
                     + (f"; {len(plan.studies)} studies to search" if search is not None else ""))
        run_rounds(plan, store, worker_context(plan.spec, store), progress, search)
    failures, done = store.failures(sweep), store.done_keys(sweep)
    unfinished = 0 if plan.spec.design is not None else sum(  # a design leaves cells untrained on purpose
        c.cell_key not in done and c.cell_key not in failures for c in plan.pending)
    return RunSummary(sweep, len(plan.cells), skipped, progress.done, progress.failed, len(failures), unfinished,
                      search=search.settled if search is not None else None,
                      search_open=search.open_studies() if search is not None else 0)


def _design_open(plan: Plan, store: Store) -> bool:
    from .designs import design_now

    return design_now(store, plan.spec).stop is None


def freeze(plan: Plan, store: Store) -> Plan:
    """The spec, then its grid, written to the store where they are not there yet (a grid that is not the frozen
    spec's, from a crash between the two writes, is written again); the plan again, less the cells a driver
    that held the lock before this one finished."""
    sweep = plan.spec.name
    grid = store.read_grid(sweep)
    gridded = set(grid.column("cell_key").to_pylist()) if grid is not None and "cell_key" in grid.column_names \
        else set()  # a search alone has an empty grid
    if plan.frozen != "same" or grid is None or gridded != plan.keys:
        if plan.frozen != "same":
            store.write_spec(sweep, plan.spec.to_yaml())
        store.write_grid(sweep, [{"cell_key": c.cell_key} | c.to_dict() for c in plan.cells])
    done_now = store.done_keys(sweep)
    return dataclasses.replace(plan, pending=[c for c in plan.pending if c.cell_key not in done_now])


def worker_context(spec: Any, store: Store) -> Any:
    """The `CellContext` every worker gets, after a warning where a folder the workers write is not shared by
    the cluster's nodes."""
    import ray

    from augworth.trainables.trainable import CellContext

    ex, sweep = spec.execution, spec.name
    nodes = sum(n["Alive"] for n in ray.nodes())
    if ex.checkpoint_every:
        warn_if_unshared(checkpoint_dir(store, sweep, ex.checkpoint_storage), nodes)
    if ex.keep_weights:
        warn_if_unshared(store.location(sweep, "weights"), nodes, "the weights folder",
                         "weights kept on another node's disk are not found by `augworth evaluate`")
    return CellContext.from_spec(spec, checkpoint_dir=checkpoint_dir(store, sweep, ex.checkpoint_storage),
                                 code_revision=code_revision(), weights_dir=store.location(sweep, "weights"))


def run_rounds(plan: Plan, store: Store, context: Any, progress: SweepProgress, search: Any) -> None:
    """The plan's pending cells in rounds of Tune fits, then the search's studies in one more.

    Tune's experiment state grows with its trial count (Ray issue #64231), so a huge sweep runs as several
    Tuner.fit calls of at most MAX_TRIALS_PER_FIT trials each; a fit that a node joins is drained
    (`StoreWriter.on_step_begin`) and the next round packs what is left onto every node. A search takes the last
    round into its own fit: one set of workers for both (they cost seconds to start)."""
    import ray
    from ray import tune
    from ray.tune import PlacementGroupFactory

    from augworth.trainables.trainable import run_chunk

    from .writer import StoreWriter, finished_cells

    sweep, ex, bundle = plan.spec.name, plan.spec.execution, cell_bundle(plan.spec.execution)
    checkpoints = context.checkpoint_dir if ex.checkpoint_every else None
    finished, finished_run = finished_cells(), f"{sweep}/{uuid.uuid4().hex}"
    tune_dir = tempfile.mkdtemp(prefix="augworth-tune-")

    def nodes_for_cells() -> set[str]:
        return {n["NodeID"] for n in ray.nodes() if n["Alive"] and holds_a_cell(n["Resources"], bundle)}

    try:
        with progress:
            pending, number = list(plan.pending), 0
            while True:
                slots = concurrent_cells(ray.cluster_resources(), bundle)
                chunks = pack_cells(pending, slots, ex.cells_per_trial)
                if not chunks or plan.spec.design is not None or (search is not None
                                                                   and len(chunks) <= MAX_TRIALS_PER_FIT):
                    break
                round_chunks = chunks[:MAX_TRIALS_PER_FIT]
                pending = [cell for chunk in chunks[MAX_TRIALS_PER_FIT:] for cell in chunk]
                capped = ex.max_concurrent is not None and slots >= ex.max_concurrent  # a new node adds nothing
                writer = StoreWriter(store, sweep, progress, checkpoints, finished, finished_run,
                                     nodes=None if capped else nodes_for_cells)
                tune.Tuner(
                    tune.with_resources(
                        tune.with_parameters(run_chunk, chunks=[[c.to_dict() for c in chunk] for chunk in round_chunks],
                                             context=context, finished=finished, finished_run=finished_run),
                        PlacementGroupFactory([bundle]),  # a trial trains one cell at a time
                    ),
                    param_space={"chunk": tune.grid_search(list(range(len(round_chunks))))},
                    tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=ex.max_concurrent),
                    run_config=tune.RunConfig(name=f"{sweep}-{number}", storage_path=tune_dir, verbose=0,
                                              callbacks=[writer], failure_config=tune.FailureConfig(max_failures=2)),
                ).fit()
                number += 1
                if writer.drained:
                    pending = [c for chunk in round_chunks for c in chunk if c.cell_key not in writer.settled] + pending
                    ray.get(finished.drain.remote(finished_run, False))
            if plan.spec.design is not None:
                from .design_tune import run_design

                run_design(plan, store, context, progress, finished=finished, finished_run=finished_run,
                           tune_dir=tune_dir,
                           writer=StoreWriter(store, sweep, progress, checkpoints, finished, finished_run))
            elif search is not None:
                from .search_tune import run_studies

                run_studies(search, context, progress, chunks=[[c.to_dict() for c in chunk] for chunk in chunks],
                            finished=finished, finished_run=finished_run, tune_dir=tune_dir,
                            writer=StoreWriter(store, sweep, progress, checkpoints, finished, finished_run))
    finally:
        finished.forget.remote(finished_run)
        shutil.rmtree(tune_dir, ignore_errors=True)
        store.write_running(sweep, {})
