"""The Ray Tune function trainable: a plain function of a config dict that reports one result per cell.

One Tune trial runs a chunk of cells (packing: a cell on the embedded data trains in about as long as a
Tune trial costs to start). Each cell is retried here, inside the trainable. Tune's `max_failures` covers a
dead worker process or node by starting the trial again from its first cell; the trial then asks the driver
(`finished`, an actor on the driver's node) which of its cells are already written, skips those, and the
cell that was in flight continues from its checkpoint. Each cell ends in one message (`messages.py`): its
rows (`CellRows`, complete from `results.rows.cell_rows`) or its failure (`CellFailure`), which the driver
writes to the store.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import socket
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from augworth.search_spaces.cells import Cell, ProbeSettings

from .messages import CellCheckpointed, CellFailure, CellResumed, CellRows, CellSkipped, CellStarted, Send, stream

if TYPE_CHECKING:
    from augworth.search_spaces import Spec

    from .train import CellResult, Evaluation

# torch and the training code load inside the functions that train: the driver imports this module for
# `CellContext` and `run_chunk` (a reference it hands to Tune) and never trains, so it never pays for torch.


@dataclass(frozen=True)
class CellContext:
    """What every cell of a sweep needs besides its own fields: settings from the spec and the driver, typed and
    frozen, shipped to the workers once (`from_spec`). The defaults are neutral (no retries, no checkpoints,
    no probes), for a cell run by hand; a sweep's values come from its spec, where its defaults live."""

    eval_sets: tuple[str | Mapping[str, Any], ...]  # names, or the spec's eval-set requests (label, name, ...)
    dataset_root: str | None = None
    dataset_options: Mapping[str, Any] = field(default_factory=dict)
    dataset_download: bool = False
    probes: ProbeSettings | None = None  # the spec's probes block, batch size resolved; None: no probes
    deterministic: bool = False
    retries: int = 0
    cpus_per_cell: float = 1
    gpus_per_cell: float = 0
    timeout_s: float | None = None
    checkpoint_every: int | None = None
    checkpoint_dir: str | None = None
    weights_dir: str | None = None  # execution.keep_weights: each cell's final weights go here (weights.py)
    plugins: tuple[str, ...] = ()
    code_revision: str | None = None
    cuda_graph: bool = False  # execution.cuda_graph: on CUDA, the step replayed from a CUDA graph (graph_step.py)

    @classmethod
    def from_spec(cls, spec: Spec, *, checkpoint_dir: str | None, code_revision: str | None,
                  weights_dir: str | None = None) -> CellContext:
        ex, probes = spec.execution, spec.probes
        return cls(
            eval_sets=tuple(spec.eval_requests()), dataset_root=spec.dataset.root,
            dataset_options=dict(spec.dataset.options), dataset_download=spec.dataset.download,
            probes=probes.settings(spec.budget.batch_size) if probes is not None and probes.which() else None,
            deterministic=ex.deterministic, retries=ex.retries, cpus_per_cell=ex.cpus_per_cell,
            gpus_per_cell=ex.gpus_per_cell, timeout_s=ex.timeout_s, checkpoint_every=ex.checkpoint_every,
            checkpoint_dir=checkpoint_dir, weights_dir=weights_dir if ex.keep_weights else None,
            plugins=tuple(ex.plugins), code_revision=code_revision, cuda_graph=ex.cuda_graph,
        )


def rows_of(cell: Cell, result: CellResult, code_revision: str | None,
            provenance: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    import torch

    from augworth.results.rows import cell_rows

    return cell_rows(cell, [dataclasses.asdict(e) for e in result.evaluations], param_count=result.param_count,
                     device=result.device, torch_version=torch.__version__, code_revision=code_revision,
                     provenance=provenance)


class CellTimeout(RuntimeError):
    """One attempt of a cell ran past `execution.timeout_s`."""


def _deadline(timeout_s: float | None) -> Callable[[int], None] | None:
    """A per-step check that stops an attempt once it has run longer than `timeout_s` seconds."""
    if timeout_s is None:
        return None
    start = time.monotonic()

    def check(step: int) -> None:
        if time.monotonic() - start > timeout_s:
            raise CellTimeout(f"exceeded execution.timeout_s = {timeout_s:g} s at step {step}")

    return check


def run_cell(cell: Cell, context: CellContext, report: Send | None = None,
             on_eval: Callable[[int, list[Evaluation]], Any] | None = None,
             provenance: Mapping[str, Any] | None = None) -> CellRows | CellFailure:
    """Train one cell with retries; returns the message for the driver: its rows or its failure record.

    `report` (the trial's pump) is told of checkpoints saved and loaded, for the driver's log and status.
    `on_eval` (a search's pruning gate) is told each evaluation step; the `Pruned` it may raise passes through.
    `provenance`: columns every row of the cell gets besides its own (a search's study and trial).
    """
    import torch

    from .checkpoint import Checkpointer
    from .datasets import load_dataset
    from .train import NonFiniteLoss, Pruned, train_cell
    from .weights import save_weights

    data = load_dataset(cell.dataset, context.dataset_root, options=dict(context.dataset_options),
                        download=context.dataset_download)
    if data.fingerprint != cell.dataset_fingerprint:
        # the files under the root changed since the sweep was planned: refuse, or results would mix data
        return CellFailure.of(cell, f"data set fingerprint {data.fingerprint} != planned {cell.dataset_fingerprint}")
    if context.gpus_per_cell > 0 and not torch.cuda.is_available():
        # never a GPU cell trained on a CPU: days of it, under the same keys as GPU rows
        return CellFailure.of(cell, f"gpus_per_cell is {context.gpus_per_cell:g} but {socket.gethostname()} has "
                              "no CUDA device")
    device = "cuda" if context.gpus_per_cell > 0 else "cpu"
    checkpoint = None
    if context.checkpoint_every:
        if context.checkpoint_dir is None:
            raise ValueError("checkpoint_every needs a checkpoint_dir")
        tell: Send = report or (lambda message: None)
        checkpoint = Checkpointer(
            context.checkpoint_dir, cell.cell_key, context.checkpoint_every,
            on_save=lambda step: tell(CellCheckpointed(cell.cell_key, step)),
            on_load=lambda step: tell(CellResumed(cell.cell_key, step)))
    errors: list[str] = []
    for attempt in range(1, context.retries + 2):
        try:  # a retry, or a cell restarted after its worker or driver died, continues from its checkpoint
            result = train_cell(cell, data, context.eval_sets, device=device, on_step=_deadline(context.timeout_s),
                                checkpoint=checkpoint, probes=context.probes, deterministic=context.deterministic,
                                on_eval=on_eval, cuda_graph=context.cuda_graph)
        except Pruned:
            if checkpoint is not None:
                checkpoint.clear()
            raise
        except Exception as exc:  # any failure of one cell is recorded; the sweep goes on
            errors.append(f"attempt {attempt}: {exc.__class__.__name__}: {exc}")
            last_traceback = traceback.format_exc()
            if checkpoint is not None and isinstance(exc, NonFiniteLoss):
                checkpoint.clear()  # a retry after a divergence starts clean, not from the state that led to it
            continue
        if context.weights_dir is not None:  # before the rows: a done cell of such a sweep always has its weights
            try:
                assert result.model is not None  # train_cell returns its model
                save_weights(context.weights_dir, cell, result.model)
            except Exception as exc:  # a full disk, an unreachable store: the cell is not done without them
                return CellFailure.of(
                    cell, f"could not keep the weights (execution.keep_weights): {exc.__class__.__name__}: {exc}",
                    attempts=attempt, traceback=traceback.format_exc())
        return CellRows(cell.cell_key, rows_of(cell, result, context.code_revision, provenance), attempt)
    if checkpoint is not None:
        checkpoint.clear()  # a failed cell leaves no checkpoint: `resume --retry-failed` starts it clean
    return CellFailure.of(cell, errors[-1].split(": ", 1)[1], attempts=len(errors), traceback=last_traceback,
                          errors=errors)


def run_chunk(config: dict[str, Any], chunks: Sequence[Sequence[dict[str, Any]]], context: CellContext,
              finished: Any = None, finished_run: str = "") -> None:
    """Tune trainable: `config["chunk"]` picks a chunk of cells (shipped once through the object store).

    `finished`: a handle to the driver's actor of cells written or recorded as failed in this run of the sweep
    (`finished_run`); a restarted trial skips them rather than train them again, and a trial of a fit the
    driver drains leaves its remaining cells to the next fit.

    The cells train one after another in a background thread while this one hands their messages to Tune
    (`messages.stream`), so no cell waits on the driver.
    """
    import ray
    import torch
    from ray import tune

    for module in context.plugins:
        importlib.import_module(module)  # registers the spec's own data sets, augmentations or models
    if context.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before CUDA starts: deterministic cuBLAS
    node = ray.get_runtime_context().get_node_id()  # where the cells train (status, logs)
    threads = max(1, int(context.cpus_per_cell))
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)

    def train_all(send: Send) -> None:  # an exception here is the trial's own (run_cell records a cell's)
        for cell_dict in chunks[config["chunk"]]:
            cell = Cell.from_dict(cell_dict)
            verdict = "train" if finished is None else ray.get(finished.next_cell.remote(finished_run, cell.cell_key))
            if verdict == "skip":  # this trial was restarted (a worker or node died) after the cell was written
                send(CellSkipped(cell.cell_key))
                continue
            if verdict == "stop":  # the driver drains this fit: the cluster grew, and a new fit uses it all
                break
            send(CellStarted(cell.cell_key, node))  # for `augworth status`
            send(run_cell(cell, context, send))

    stream([train_all], tune.report, names=["augworth-cells"])
