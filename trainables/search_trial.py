"""The Tune trainable of a search trial: one parameter point trained at every seed, its cells side by side.

The seeds' cells train in threads of one trial (torch releases the GIL in its kernels). With a pruner they
wait for one another at each evaluation step (a cell resumed from a checkpoint tells its stored evaluations
again first), so the trial can tell the study its objective there (the mean over its seeds, as the pruner
needs) and stop every seed at once when the pruner says so. A seed whose cell is already in the store (a
trial re-run after a crash) does not train again: its stored accuracies (`known`) enter the means.

Messages reach the driver as in a grid trial (`run_chunk`, one pump: `messages.stream`); the rows carry the study
and trial number as provenance columns from the row builder on.
A confirmation (the study's best point on fresh seeds, `confirm` in the payload) runs the same way, unpruned,
and its rows say so (`search_confirm`).
Pruned cells are reported as pruned and never as rows: the study records them.
"""

from __future__ import annotations

import functools
import importlib
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from augworth.search_spaces.cells import Cell

from .messages import CellPruned, CellSkipped, CellStarted, SearchTrialEnd, Send, stream
from .train import Evaluation, Pruned
from .trainable import CellContext, run_cell, run_chunk


class LockstepGate:
    """The seeds of one trial meet at each evaluation step; the first step all live seeds reach is decided
    once (`decide(step, mean)` -> prune?), and every seed gets that decision. A seed that leaves (done or
    failed) is no longer waited for."""

    def __init__(self, seeds: Sequence[int], known: Mapping[int, Sequence[float]],
                 decide: Callable[[int, float], bool]) -> None:
        self.live, self.known, self.decide = set(seeds), known, decide
        self.values: dict[int, dict[int, float]] = {}
        self.decisions: dict[int, bool] = {}
        self.cond = threading.Condition()

    def arrive(self, seed: int, step: int, accuracy: float) -> bool:
        with self.cond:
            self.values.setdefault(step, {})[seed] = accuracy
            self.cond.notify_all()
            while step not in self.decisions:
                if self.live <= self.values[step].keys():
                    seen = list(self.values[step].values()) + list(self.known.get(step, ()))
                    self.decisions[step] = bool(self.decide(step, sum(seen) / len(seen)))
                    self.cond.notify_all()
                else:
                    self.cond.wait()
            return self.decisions[step]

    def leave(self, seed: int) -> None:
        with self.cond:
            self.live.discard(seed)
            self.cond.notify_all()


def run_search_trial(config: dict[str, Any], context: CellContext, finished: Any = None, oracle: Any = None,
                     finished_run: str = "") -> None:
    """Tune trainable: `config["search"]` holds the study, the trial number, its cells (dicts), the stored
    accuracies of seeds already done (`known`: step -> values), the objective's eval set, and whether to prune.

    `oracle`: the driver's actor that reports an intermediate mean to the study and says whether to prune.
    """
    import ray
    from ray import tune

    trial = config["search"]
    for module in context.plugins:
        importlib.import_module(module)
    if context.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before CUDA starts: deterministic cuBLAS
    threads = max(1, int(context.cpus_per_cell))
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    cells = [Cell.from_dict(c) for c in trial["cells"]]
    final_step = max((c.steps for c in cells), default=0)
    provenance = {"search_study": trial["study"], "search_trial": int(trial["number"])}
    if trial.get("confirm"):  # the trial's point again, on seeds the search never used
        provenance["search_confirm"] = True

    def decide(step: int, mean: float) -> bool:
        if not trial["prune"] or step >= final_step:  # the last evaluation is the objective, not a rung
            return False
        return bool(ray.get(oracle.report.remote(trial["study"], int(trial["number"]), step, mean)))

    known = {int(k): v for k, v in trial.get("known", {}).items()}
    gate = LockstepGate([c.seed for c in cells], known, decide)
    pruned_at: list[int] = []

    def train(cell: Cell, send: Send) -> None:  # an exception here is the trial's own (run_cell records a cell's)
        def on_eval(step: int, evaluations: list[Evaluation]) -> None:
            accuracy = next(e.accuracy for e in evaluations if e.eval_set == trial["objective"])
            if gate.arrive(cell.seed, step, accuracy):
                pruned_at.append(step)
                raise Pruned(f"pruned at step {step}")

        try:
            if finished is not None and ray.get(finished.has.remote(finished_run, cell.cell_key)):
                send(CellSkipped(cell.cell_key))
                return
            send(CellStarted(cell.cell_key, ray.get_runtime_context().get_node_id(), alongside=True))
            try:
                send(run_cell(cell, context, send, on_eval=on_eval if trial["prune"] else None,
                              provenance=provenance))
            except Pruned:
                send(CellPruned(cell.cell_key, min(pruned_at)))
        finally:
            gate.leave(cell.seed)

    stream([functools.partial(train, c) for c in cells], tune.report, names=[f"augworth-seed-{c.seed}" for c in cells])
    tune.report(SearchTrialEnd(trial["study"], int(trial["number"]), min(pruned_at) if pruned_at else None).wire())


def run_trial(config: dict[str, Any], chunks: Sequence[Sequence[dict[str, Any]]], context: CellContext,
              finished: Any = None, oracle: Any = None, finished_run: str = "") -> None:
    """Tune trainable of a sweep with a search: a grid chunk (`config["chunk"]`) or a search trial."""
    if "search" in config:
        run_search_trial(config, context, finished, oracle, finished_run)
    else:
        run_chunk(config, chunks, context, finished, finished_run)
