"""The driver's side of a run inside Ray: the one store writer (a Tune callback) and the finished-cells actor.

Ray is imported at load: the runner imports this module once it runs cells (the command line's modules never
do), so the classes live at module level rather than in factories that deferred the import.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import ray
from ray import tune
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from augworth.results import Store
from augworth.trainables import messages

from .progress import SweepProgress

FINISHED_CELLS_ACTOR = "augworth-finished-cells"
NODE_CHECK_S = 2.0  # how often a grid fit asks whether a node joined (one call to the GCS)


@ray.remote(num_cpus=0, max_restarts=0)
class FinishedCells:
    def __init__(self) -> None:
        self.keys: dict[str, set[str]] = {}
        self.draining: set[str] = set()

    def add(self, run: str, key: str) -> None:
        self.keys.setdefault(run, set()).add(key)

    def has(self, run: str, key: str) -> bool:
        return key in self.keys.get(run, ())

    def next_cell(self, run: str, key: str) -> str:
        """What a chunk trial does with its next cell: "skip" it (written already), "stop" (the run drains
        its `Tuner.fit`; the next one takes the rest), or "train" it."""
        return "skip" if self.has(run, key) else "stop" if run in self.draining else "train"

    def drain(self, run: str, on: bool) -> None:
        (self.draining.add if on else self.draining.discard)(run)

    def forget(self, run: str) -> None:
        self.keys.pop(run, None)
        self.draining.discard(run)


def finished_cells() -> Any:
    """The actor that holds, per run of a sweep, the keys of the cells the run has written or recorded as
    failed, so a trial that Tune restarts (its worker or node died) skips them: it would re-train them
    otherwise, as their checkpoints are cleared once written. One per Ray session, on the driver's node,
    reused by every run of this driver process (an actor costs a worker process to start). Each run keeps its
    own set under a fresh key (`finished_run`), so nothing waits here for the actor to start."""
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    return FinishedCells.options(  # type: ignore[attr-defined]  # a Ray actor class
        name=FINISHED_CELLS_ACTOR, get_if_exists=True, scheduling_strategy=here).remote()


class StoreWriter(tune.Callback):
    """The one writer of the sweep: each cell's report becomes a file or a failure record, and the
    cells in training are kept in `running.json` so `augworth status` can tell them apart."""

    def __init__(self, store: Store, sweep: str, progress: SweepProgress, checkpoints: str | None,
                 finished: Any, finished_run: str, nodes: Callable[[], set[str]] | None = None) -> None:
        self.store, self.sweep, self.progress = store, sweep, progress
        self.finished, self.finished_run = finished, finished_run
        self.settled: set[str] = set()  # cells this fit wrote or recorded as failed
        # `nodes`: the alive nodes a cell fits on; a fit that one joins is drained (on_step_begin)
        self.nodes, self.drained = nodes, False
        self.seen, self.next_look = (nodes() if nodes else set()), time.monotonic() + NODE_CHECK_S
        self.checkpoints = checkpoints  # the folder of running cells' checkpoints, if they checkpoint
        self.running: dict[str, dict[str, Any]] = {}  # cell_key -> where and since when
        self.trial_cells: dict[str, set[str]] = {}  # trial id -> the cells it trains now

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its run config (callbacks included) into the experiment state; a driver-side
        # writer has nothing to restore, and resume does not use Tuner.restore.
        return {}

    def _cell_done(self, trial: Any, key: str | None = None) -> None:
        """`key` of `trial` is no longer training; without a key, none of its cells is."""
        keys = self.trial_cells.get(trial.trial_id, set())
        gone = {key} & keys if key is not None else set(keys)
        keys -= gone
        if any([self.running.pop(k, None) is not None for k in gone]):
            self.store.write_running(self.sweep, self.running)

    def on_step_begin(self, iteration, trials, **info):
        # Tune puts no trial on a node that joins mid-fit (it reuses the actors it has), so once a node
        # joins while trials wait, the fit is drained: each trial stops before its next cell, and the next
        # round packs what is left onto every node.
        if self.nodes is None or self.drained or time.monotonic() < self.next_look:
            return
        self.next_look = time.monotonic() + NODE_CHECK_S
        joined = self.nodes() - self.seen
        if joined and any(t.status == "PENDING" for t in trials):
            self.drained = True
            ray.get(self.finished.drain.remote(self.finished_run, True))
            self.progress.log(f"node {', '.join(sorted(n[:8] for n in joined))} joined: the cells left start "
                              "again on every node")

    def _update(self, trials: list[Any]) -> None:
        self.progress.running = len(self.running)
        self.progress.update()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        match messages.decode(result):
            case messages.CellStarted(cell_key=key, node=node, alongside=alongside):
                if not alongside:  # a chunk trains its cells one by one, a search trial all at once
                    self._cell_done(trial)
                self.trial_cells.setdefault(trial.trial_id, set()).add(key)
                self.running[key] = {"host": result.get("hostname"), "node": node, "since": time.time()}
                self.store.write_running(self.sweep, self.running)
                self.progress.log(f"cell {key} started" + (f" on node {node[:8]}" if node else ""))
            case messages.CellRows(cell_key=key, rows=rows):
                self.store.write_cell(self.sweep, key, rows)
                self.store.clear_failure(self.sweep, key)
                self.settled.add(key)
                # before the checkpoint goes: a restarted trial skips the cell
                ray.get(self.finished.add.remote(self.finished_run, key))
                if self.checkpoints:  # only once the rows are in the store: a crash before keeps it to resume
                    from augworth.trainables.checkpoint import Checkpointer

                    Checkpointer(self.checkpoints, key, 1).clear()
                self.progress.done += 1
                self._cell_done(trial, key)
                self.progress.log(f"cell {key} done")
            case messages.CellFailure(cell_key=key, record=record):
                self.store.write_failure(self.sweep, key, record | {"cell_key": key})
                self.settled.add(key)
                ray.get(self.finished.add.remote(self.finished_run, key))
                self.progress.failed += 1
                self._cell_done(trial, key)
                self.progress.log(f"cell {key} failed: {str(record.get('reason')).splitlines()[0]}")
            case messages.CellPruned(cell_key=key, step=step):  # the study records it; nothing goes to results/
                self._cell_done(trial, key)
                self.progress.log(f"cell {key} pruned at step {step}")
            case messages.CellSkipped(cell_key=key):
                self.progress.log(f"cell {key} skipped: written before its trial was restarted")
            case messages.CellCheckpointed(cell_key=key, step=step):
                self.progress.log(f"cell {key} checkpoint at step {step}")
            case messages.CellResumed(cell_key=key, step=step):
                self.progress.log(f"cell {key} resumed from its checkpoint at step {step}")
        self._update(trials)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._cell_done(trial)
        self._update(trials)

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._cell_done(trial)  # its cell is not running any more; the restarted trial skips written cells
        self.progress.log(f"trial {trial.trial_id} lost its worker process; Tune starts it again")
        self._update(trials)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._cell_done(trial)  # the worker died: its cell is not running any more (resume re-runs it)
        self.progress.log(f"trial {trial.trial_id} lost its worker process too often; its cells left are for "
                          f"`augworth resume {self.sweep}`")
        self._update(trials)
