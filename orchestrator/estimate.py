"""Estimated compute for a dry run: measured, not guessed.

From the sweep's own finished cells where there are any (their recorded training seconds per step);
otherwise from a few timed steps of one pending cell in this process.
"""

from __future__ import annotations

import time

from .plan import Plan
from .store import Store

PROBE_STEPS = 10


def estimate_cpu_seconds(plan: Plan, store: Store) -> float:
    if not plan.pending:
        return 0.0
    per_step = _per_step_from_store(plan, store)
    if per_step is None:
        per_step = _per_step_probe(plan)
    cpus = plan.spec.execution.cpus_per_cell
    return sum(c.steps for c in plan.pending) * per_step * cpus


def _per_step_from_store(plan: Plan, store: Store) -> float | None:
    if not plan.done:
        return None
    con = store.connect(plan.spec.name)
    value = con.execute("SELECT avg(train_seconds / steps) FROM results WHERE final").fetchone()[0]
    return float(value) if value else None


def _per_step_probe(plan: Plan) -> float:
    import dataclasses

    import torch

    from trainables.datasets import load_dataset
    from trainables.train import train_cell

    cell = plan.pending[0]
    torch.set_num_threads(max(1, int(plan.spec.execution.cpus_per_cell)))
    data = load_dataset(cell.dataset, plan.spec.dataset.root)
    probe = dataclasses.replace(cell, steps=PROBE_STEPS + 2, eval_every=PROBE_STEPS + 2, warmup_steps=0)
    train_cell(dataclasses.replace(probe, steps=2, eval_every=2), data, [])  # warm-up
    t0 = time.perf_counter()
    train_cell(probe, data, [])
    return (time.perf_counter() - t0) / probe.steps
