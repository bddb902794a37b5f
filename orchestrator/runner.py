"""Run a plan on Ray Tune: cells packed into trials, actors reused, rows written by the driver.

Without an address (or RAY_ADDRESS) a private local Ray starts (`address="local"`, so a stray cluster on
the machine is never joined) with the dashboard off. If Ray is already initialised in this process (tests,
notebooks) it is used as it is.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .lock import SweepLock
from .plan import Plan
from .progress import SweepProgress
from .store import Store

# Tune's per-trial loggers (JSON, CSV, TensorBoard) cost tens of ms per trial; the store is our record.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
# Ray Tune warns about this on every run; our trials report once per cell by design.
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "1000")


MAX_TRIALS_PER_FIT = 256  # trials per Tuner.fit; with up to 64 cells a trial, 16k cells a round


@dataclass
class RunSummary:
    sweep: str
    total: int
    skipped: int
    done: int
    failed: int
    failed_total: int  # failure records in the sweep at the end, this run's and earlier ones

    @property
    def exit_code(self) -> int:
        return 3 if self.failed_total else 0


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


def _store_writer_class():
    from ray import tune

    class StoreWriter(tune.Callback):
        """The one writer of the sweep: each cell's report becomes a file or a failure record."""

        def __init__(self, store: Store, sweep: str, progress: SweepProgress) -> None:
            self.store, self.sweep, self.progress = store, sweep, progress

        def __getstate__(self) -> dict[str, Any]:
            # Tune pickles its run config (callbacks included) into the experiment state; a driver-side
            # writer has nothing to restore, and resume does not use Tuner.restore.
            return {}

        def _running(self, trials: list[Any]) -> None:
            self.progress.running = sum(t.status == "RUNNING" for t in trials)
            self.progress.update()

        def on_trial_start(self, iteration, trials, trial, **info):
            self._running(trials)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            key = result.get("cell_key")
            if "cell_rows" in result:
                self.store.write_cell(self.sweep, key, result["cell_rows"])
                self.store.clear_failure(self.sweep, key)
                self.progress.done += 1
            elif "cell_failure" in result:
                self.store.write_failure(self.sweep, key, result["cell_failure"] | {"cell_key": key})
                self.progress.failed += 1
            self._running(trials)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._running([t for t in trials if t is not trial])

    return StoreWriter


def run_plan(plan: Plan, store: Store, *, address: str | None = None, show_progress: bool = True) -> RunSummary:
    """Under the sweep's lock: freeze the spec in the store, run every pending cell, return the counts."""
    with SweepLock(store, plan.spec.name):
        return _run_locked(plan, store, address=address, show_progress=show_progress)


def _run_locked(plan: Plan, store: Store, *, address: str | None, show_progress: bool) -> RunSummary:
    import ray
    from ray import tune

    from trainables.trainable import run_chunk

    spec, sweep = plan.spec, plan.spec.name
    if plan.frozen != "same":
        store.write_spec(sweep, spec.to_yaml())
    done_now = store.done_keys(sweep)  # a driver that held the lock before us may have finished more
    plan.pending = [c for c in plan.pending if c.cell_key not in done_now]
    skipped = len(plan.cells) - len(plan.pending)
    progress = SweepProgress(len(plan.cells), already_done=skipped, enabled=show_progress)
    progress.done = 0
    if not plan.pending:
        return RunSummary(sweep, len(plan.cells), skipped, 0, 0, len(store.failures(sweep)))

    connect(address)
    ex = spec.execution
    slots = int(ray.cluster_resources().get("CPU", 1) // ex.cpus_per_cell)
    chunks = pack_cells([c.to_dict() for c in plan.pending], slots, ex.cells_per_trial)
    context = {
        "eval_sets": list(spec.eval_sets), "dataset_root": spec.dataset.root, "retries": ex.retries,
        "cpus_per_cell": ex.cpus_per_cell, "gpus_per_cell": ex.gpus_per_cell, "code_revision": code_revision(),
    }

    StoreWriter = _store_writer_class()
    tune_dir = tempfile.mkdtemp(prefix="augworth-tune-")
    try:
        with progress:
            # Bounded rounds: Tune's experiment state grows with its trial count (Ray issue #64231), so a
            # huge sweep runs as several Tuner.fit calls of at most MAX_TRIALS_PER_FIT trials each.
            for start in range(0, len(chunks), MAX_TRIALS_PER_FIT):
                round_chunks = chunks[start : start + MAX_TRIALS_PER_FIT]
                trainable = tune.with_resources(
                    tune.with_parameters(run_chunk, chunks=round_chunks, context=context),
                    {"cpu": ex.cpus_per_cell, "gpu": ex.gpus_per_cell},
                )
                tune.Tuner(
                    trainable,
                    param_space={"chunk": tune.grid_search(list(range(len(round_chunks))))},
                    tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=ex.max_concurrent),
                    run_config=tune.RunConfig(
                        name=f"{sweep}-{start // MAX_TRIALS_PER_FIT}", storage_path=tune_dir, verbose=0,
                        callbacks=[StoreWriter(store, sweep, progress)],
                        failure_config=tune.FailureConfig(max_failures=2),
                    ),
                ).fit()
    finally:
        shutil.rmtree(tune_dir, ignore_errors=True)
    return RunSummary(sweep, len(plan.cells), skipped, progress.done, progress.failed, len(store.failures(sweep)))
