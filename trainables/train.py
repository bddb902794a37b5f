"""Train one cell and evaluate it: the whole loop, top to bottom (airbench's layout).

Sections: setup (device, data on the device, model, optimiser, schedule), batches, augmentation,
evaluation, training. Evaluation is left out of `train_seconds`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces import Cell

from .augmentations import create_augmentation
from .datasets import DataSet, eval_set, subset_indices
from .models import create_model, init_seeded, param_count

Tensor = torch.Tensor

# Augment this many steps' batches in one call: a small model's step takes milliseconds, and one big
# batched call amortises the per-call overhead of the augmentation ops.
AUGMENT_STEPS_PER_CALL = 16
EVAL_BATCH = 1024


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or inf: the cell fails with this reason rather than record a diverged model."""


@dataclass
class Evaluation:
    step: int
    final: bool
    eval_set: str
    accuracy: float
    loss: float
    n_eval: int
    train_seconds: float


@dataclass
class CellResult:
    evaluations: list[Evaluation]
    param_count: int
    train_seconds: float
    device: str


# ----- schedule -------------------------------------------------------------------------------------

def lr_factor(step: int, *, steps: int, warmup_steps: int) -> float:
    """Linear warm-up to 1, then cosine to 0 at `steps` (the paper's schedule)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


# ----- batches --------------------------------------------------------------------------------------

def batch_indices(n: int, batch_size: int, steps: int, generator: torch.Generator) -> Iterator[Tensor]:
    """Epochs of a fresh permutation, cut into batches across epoch boundaries (works for n < batch_size)."""
    buffer = torch.empty(0, dtype=torch.int64)
    for _ in range(steps):
        while len(buffer) < batch_size:
            buffer = torch.cat([buffer, torch.randperm(n, generator=generator)])
        yield buffer[:batch_size]
        buffer = buffer[batch_size:]


# ----- evaluation -----------------------------------------------------------------------------------

@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor) -> tuple[float, float]:
    model.eval()
    correct, loss_sum = 0, 0.0
    for i in range(0, len(y), EVAL_BATCH):
        logits = model(x[i : i + EVAL_BATCH])
        loss_sum += F.cross_entropy(logits.float(), y[i : i + EVAL_BATCH], reduction="sum").item()
        correct += (logits.argmax(1) == y[i : i + EVAL_BATCH]).sum().item()
    model.train()
    return correct / len(y), loss_sum / len(y)


def eval_steps(steps: int, eval_every: int) -> list[int]:
    return sorted(set(range(eval_every, steps + 1, eval_every)) | {steps})


# ----- training -------------------------------------------------------------------------------------

def train_cell(
    cell: Cell,
    data: DataSet,
    eval_sets: Sequence[str],
    *,
    device: str | torch.device = "cpu",
    on_step: Callable[[int], Any] | None = None,
) -> CellResult:
    device = torch.device(device)
    seed = cell.seed

    # data on the device once
    idx = subset_indices(data, cell.data_size, seed)
    train_x, train_y = data.train_x[idx].to(device), data.train_y[idx].to(device)
    evals = {name: tuple(t.to(device) for t in eval_set(data, name)) for name in eval_sets}

    # model: the same initial weights for every treatment of a (size, seed)
    model = create_model(cell.model, width=cell.width, in_channels=data.channels, num_classes=data.num_classes)
    model = init_seeded(model, seed).to(device)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=cell.lr, momentum=cell.momentum, nesterov=cell.nesterov and cell.momentum > 0,
        weight_decay=cell.weight_decay,
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, steps=cell.steps, warmup_steps=cell.warmup_steps)
    )
    augment = create_augmentation(cell.augmentation, cell.strength, fill=data.mean)

    # data order and augmentation draws have their own streams, so a treatment never shifts the order
    order_gen = torch.Generator().manual_seed(seed)
    aug_gen = torch.Generator(device=device).manual_seed(seed + 1_000_003)
    batches = batch_indices(len(train_y), cell.batch_size, cell.steps, order_gen)

    evaluations: list[Evaluation] = []
    checkpoints = set(eval_steps(cell.steps, cell.eval_every))
    train_seconds = 0.0
    check_every = 1 if device.type == "cpu" else 50  # .item() is a sync point on accelerators
    model.train()
    step = 0
    while step < cell.steps:
        t0 = time.perf_counter()
        n_steps = min(AUGMENT_STEPS_PER_CALL, cell.steps - step)
        chunk = [next(batches).to(device) for _ in range(n_steps)]
        flat = torch.cat(chunk)
        x_aug = augment(train_x[flat], aug_gen).split(cell.batch_size)  # (n_steps*B, C, H, W) -> n_steps x B
        y_aug = train_y[flat].split(cell.batch_size)
        for xb, yb in zip(x_aug, y_aug, strict=True):
            loss = F.cross_entropy(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            if step % check_every == 0 or step in checkpoints:
                value = loss.item()
                if not math.isfinite(value):
                    raise NonFiniteLoss(f"non-finite training loss ({value}) at step {step}")
            if on_step is not None:
                on_step(step)
            if step in checkpoints:
                train_seconds += time.perf_counter() - t0
                for name, (ex, ey) in evals.items():
                    acc, eval_loss = evaluate(model, ex, ey)
                    evaluations.append(Evaluation(step, step == cell.steps, name, acc, eval_loss, len(ey),
                                                  train_seconds))
                t0 = time.perf_counter()
        train_seconds += time.perf_counter() - t0
    return CellResult(evaluations, param_count(model), train_seconds, str(device))
