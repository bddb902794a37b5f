"""The Ray Tune function trainable: a plain function of a config dict that reports one result per cell.

One Tune trial runs a chunk of cells (packing: a cell on the embedded data trains in about as long as a
Tune trial costs to start). Each cell is retried here, inside the trainable, so a trial never re-runs a
finished cell; Tune's `max_failures` only covers a dead worker process or node. The driver turns each
report into a store file (rows from `results.rows.cell_rows`) or a failure record (`cell_failure`).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import queue
import socket
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import torch

from results.rows import cell_rows
from search_spaces import Cell

from .checkpoint import Checkpointer
from .datasets import load_dataset
from .train import CellResult, train_cell


def rows_of(cell: Cell, result: CellResult, code_revision: str | None) -> list[dict[str, Any]]:
    return cell_rows(cell, [dataclasses.asdict(e) for e in result.evaluations], param_count=result.param_count,
                     device=result.device, torch_version=torch.__version__, code_revision=code_revision)


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


def run_cell(cell: Cell, context: dict[str, Any], report: Callable[[dict[str, Any]], Any] | None = None
             ) -> dict[str, Any]:
    """Train one cell with retries; returns the report for the driver (rows or a failure record).

    `report` (Tune's, in a trial) is told of checkpoints saved and loaded, for the driver's log and status.
    """
    data = load_dataset(cell.dataset, context.get("dataset_root"), options=context.get("dataset_options") or {},
                        download=bool(context.get("dataset_download")))
    if data.fingerprint != cell.dataset_fingerprint:
        # the files under the root changed since the sweep was planned: refuse, or results would mix data
        return {"cell_key": cell.cell_key, "cell_failure": {
            "reason": f"data set fingerprint {data.fingerprint} != planned {cell.dataset_fingerprint}",
            "traceback": "", "attempts": 0, "config": cell.to_dict()}}
    device = "cuda" if context.get("gpus_per_cell", 0) > 0 and torch.cuda.is_available() else "cpu"
    retries = int(context.get("retries", 0))
    checkpoint = None
    if context.get("checkpoint_every"):
        tell = report or (lambda event: None)
        checkpoint = Checkpointer(
            context["checkpoint_dir"], cell.cell_key, context["checkpoint_every"],
            on_save=lambda step: tell({"cell_key": cell.cell_key, "cell_checkpoint": step}),
            on_load=lambda step: tell({"cell_key": cell.cell_key, "cell_resumed": step}))
    errors: list[str] = []
    for attempt in range(1, retries + 2):
        try:  # a retry, or a cell restarted after its worker or driver died, continues from its checkpoint
            result = train_cell(cell, data, context["eval_sets"], device=device,
                                on_step=_deadline(context.get("timeout_s")), checkpoint=checkpoint,
                                probes=context.get("probes"), deterministic=bool(context.get("deterministic")))
        except Exception as exc:  # any failure of one cell is recorded; the sweep goes on
            errors.append(f"attempt {attempt}: {exc.__class__.__name__}: {exc}")
            last_traceback = traceback.format_exc()
            continue
        rows = rows_of(cell, result, context.get("code_revision"))
        return {"cell_key": cell.cell_key, "cell_rows": rows, "attempts": attempt}
    return {"cell_key": cell.cell_key, "cell_failure": {
        "reason": errors[-1].split(": ", 1)[1], "errors": errors, "traceback": last_traceback,
        "attempts": len(errors), "config": cell.to_dict(), "host": socket.gethostname()}}


def run_chunk(config: dict[str, Any], chunks: Sequence[Sequence[dict[str, Any]]], context: dict[str, Any]) -> None:
    """Tune trainable: `config["chunk"]` picks a chunk of cells (shipped once through the object store).

    `tune.report` waits for the driver to take the result before it returns; so the cells train in a
    background thread (torch releases the GIL in its kernels) while this thread hands their reports over,
    and no cell waits on the driver.
    """
    from ray import tune

    for module in context.get("plugins", ()):
        importlib.import_module(module)  # registers the spec's own data sets, augmentations or models
    if context.get("deterministic"):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before CUDA starts: deterministic cuBLAS
    threads = max(1, int(context.get("cpus_per_cell", 1)))
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    reports: queue.Queue[dict[str, Any] | BaseException | None] = queue.Queue()

    def train_all() -> None:
        try:
            for cell_dict in chunks[config["chunk"]]:
                cell = Cell.from_dict(cell_dict)
                reports.put({"cell_key": cell.cell_key, "cell_started": True})  # for `augworth status`
                reports.put(run_cell(cell, context, reports.put))
        except BaseException as exc:  # not a cell's failure (run_cell records those): the trial's own
            reports.put(exc)
        finally:
            reports.put(None)

    worker = threading.Thread(target=train_all, name="augworth-cells", daemon=True)
    worker.start()
    while (item := reports.get()) is not None:
        if isinstance(item, BaseException):
            raise item
        tune.report(item)
    worker.join()
