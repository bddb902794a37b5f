"""Train one cell and evaluate it: the whole loop, top to bottom (airbench's layout).

Sections: schedule, batches and augmentation, views, one step, evaluation, training. The device, its layout
and precision are in `device.py`; the command line (`python -m augworth.trainables.train_cli`, torch and torchvision
only) in `train_cli.py`, which imports this module (never the other way round).

Evaluation is left out of `train_seconds`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from augworth.search_spaces.cells import Cell, ProbeSettings

from .augmentations import Augment, create_augmentation
from .augmentations.core import identity
from .checkpoint import Checkpointer
from .datasets import DataSet, eval_request, eval_set, eval_set_fingerprint, subset_indices, to_float
from .device import DeviceSettings, autocast_for, device_settings, keep_freed_memory, place_model
from .graph_step import GraphedStep, eager_optimizer_state, graph_optimizer
from .invariance import wrap_invariance
from .models import create_model, init_seeded, param_count, standardized
from .probes import probe_cell

Tensor = torch.Tensor

# Augment this many steps' batches in one call: a small model's step takes milliseconds, and one big
# batched call amortises the per-call overhead of the augmentation ops (python -m bench.train_step).
AUGMENT_STEPS_PER_CALL = 16
# ... but on CPU at most this many bytes of images per call, so that a call's batch-sized temporaries stay
# below the 32 MiB past which glibc maps fresh memory for every allocation even with keep_freed_memory (and
# page-faults it in): trivialaugment+crop+flip on 3x32x32 images, one thread, 13.5-14 us per image at
# 1,024 and 2,048 images per call, 39 us at 4,096.
AUGMENT_CALL_BYTES_CPU = 24 * 2**20
EVAL_BATCH = 1024


class Pruned(Exception):
    """A search's pruner stopped the cell's trial at an intermediate evaluation (never a failure)."""


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or inf: the cell fails with this reason, not a diverged model's rows."""


@dataclass
class Evaluation:
    step: int
    final: bool
    eval_set: str
    accuracy: float
    loss: float
    n_eval: int
    train_seconds: float
    # the probes at this step, where the spec asks for them (the same on every eval set's row)
    grad_noise: float | None = None
    flatness: float | None = None
    flatness_std: float | None = None
    hessian_top_eig: float | None = None
    eval_set_fingerprint: str | None = None  # name, options and content of the eval set (datasets.core)


@dataclass
class CellResult:
    evaluations: list[Evaluation]
    param_count: int
    train_seconds: float
    device: str
    model: nn.Module | None = dataclasses.field(default=None, repr=False)  # trained: kept if the spec asks


# ----- schedule -------------------------------------------------------------------------------------

def lr_factor(step: int, *, steps: int, warmup_steps: int) -> float:
    """Linear warm-up to 1, then cosine to 0 at `steps` (the paper's schedule)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


# ----- batches and augmentation ---------------------------------------------------------------------

def batch_indices(n: int, batch_size: int, steps: int, generator: torch.Generator) -> Iterator[Tensor]:
    """Epochs of a fresh permutation, cut into batches across epoch boundaries (works for n < batch_size)."""
    buffer = torch.empty(0, dtype=torch.int64)
    for _ in range(steps):
        while len(buffer) < batch_size:
            buffer = torch.cat([buffer, torch.randperm(n, generator=generator)])
        yield buffer[:batch_size]
        buffer = buffer[batch_size:]


def steps_per_augment_call(batch_size: int, image_bytes: int, device: torch.device) -> int:
    if device.type != "cpu":
        return AUGMENT_STEPS_PER_CALL
    return max(1, min(AUGMENT_STEPS_PER_CALL, AUGMENT_CALL_BYTES_CPU // (batch_size * image_bytes)))


def augmented_batches(
    train_x: Tensor,
    train_y: Tensor,
    order: Iterator[Tensor],
    augment: Augment,
    generator: torch.Generator,
    *,
    steps: int,
    batch_size: int,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> Iterator[tuple[Tensor, Tensor]]:
    """`steps` training batches (x, y), augmented several steps' worth at a time (steps_per_augment_call).

    `order` yields each step's indices into train_x (on the CPU); train_x stays (N, C, H, W) contiguous on its
    device, the layout the augmentations are written for, uint8 or float (converted per call: a uint8 pool
    takes a quarter of the device memory), and each augmented chunk is laid out in `memory_format` once.
    """
    device = train_x.device
    per_call = steps_per_augment_call(batch_size, train_x[0].nbytes, device)
    done = 0
    while done < steps:
        n_steps = min(per_call, steps - done)
        flat = torch.cat([next(order) for _ in range(n_steps)])  # (n_steps * B,)
        if device.type != "cpu":  # a copy from pinned memory does not wait for the GPU's queue to drain
            flat = flat.pin_memory().to(device, non_blocking=True)
        x = augment(to_float(train_x.index_select(0, flat)), generator)  # (n_steps * B, C, H, W)
        x = x.contiguous(memory_format=memory_format)
        y = train_y.index_select(0, flat)
        yield from zip(x.split(batch_size), y.split(batch_size), strict=True)
        done += n_steps


# ----- views ----------------------------------------------------------------------------------------
# "random": a fresh augmentation of every image at every step (augmented_batches as it is). "fixed": r views
# of each image drawn once per cell and frozen, then trained on without online augmentation (the paper's
# Fig. 1). "same_batch": each batch holds batch_size / k images, each k times, augmented independently.

FIXED_VIEWS_CHUNK = 4096  # images augmented per call while materialising fixed views


def fixed_views(train_x: Tensor, augment: Augment, generator: torch.Generator, r: int,
                first_clean: bool) -> Tensor:
    """(r * N, C, H, W): view j of image i at j * N + i, in train_x's dtype (uint8 views are rounded, as an
    augmented image saved to disk would be). With `first_clean` view 0 is the image itself."""
    views = []
    for j in range(r):
        if j == 0 and first_clean:
            views.append(train_x)
            continue
        view = torch.cat([augment(to_float(chunk), generator) for chunk in train_x.split(FIXED_VIEWS_CHUNK)])
        views.append(view.mul(255).round_().to(torch.uint8) if train_x.dtype == torch.uint8 else view)
    return torch.cat(views)


def repeated(order: Iterator[Tensor], k: int) -> Iterator[Tensor]:
    """Each batch's indices k times over, image by image: k views of every image in the same batch."""
    for idx in order:
        yield idx.repeat_interleave(k)


# ----- one step -------------------------------------------------------------------------------------

def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor,
               settings: DeviceSettings, accumulate: int = 1) -> Tensor:
    """Forward, loss, backward, update; returns the loss without reading it (no host sync).

    `accumulate` > 1 splits the batch into that many micro-batches whose gradients add up to the batch's
    (BatchNorm then normalises over each micro-batch): for widths whose batch does not fit in memory.
    """
    if accumulate == 1:
        with autocast_for(settings):
            loss = F.cross_entropy(model(x), y)  # autocast keeps cross_entropy in fp32
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss
    optimizer.zero_grad(set_to_none=True)
    total = torch.zeros((), device=x.device)
    for xm, ym in zip(x.chunk(accumulate), y.chunk(accumulate), strict=True):
        with autocast_for(settings):
            loss = F.cross_entropy(model(xm), ym) / accumulate
        loss.backward()
        total += loss.detach()
    optimizer.step()
    return total


def finite_state(loss: Tensor, model: nn.Module) -> bool:
    """Whether the step's loss and every weight are finite, in one host sync: a checkpoint must never hold a
    diverged state, or every retry would resume from it. (Once a weight is NaN every later loss is too.)"""
    norm = torch.nn.utils.get_total_norm([p.detach() for p in model.parameters()])
    return bool(torch.isfinite(loss.detach().float() + norm.float()).item())


# ----- evaluation -----------------------------------------------------------------------------------

@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor,
             settings: DeviceSettings | None = None) -> tuple[float, float]:
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=y.device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=y.device)
    with autocast_for(settings) if settings is not None else contextlib.nullcontext():
        for i in range(0, len(y), EVAL_BATCH):
            logits = model(to_float(x[i : i + EVAL_BATCH])).float()
            loss_sum += F.cross_entropy(logits, y[i : i + EVAL_BATCH], reduction="sum")
            correct += (logits.argmax(1) == y[i : i + EVAL_BATCH]).sum()
    model.train()
    return correct.item() / len(y), loss_sum.item() / len(y)  # one host sync per eval set


def load_eval_sets(data: DataSet, eval_sets: Sequence[str | Any], settings: DeviceSettings
                   ) -> tuple[dict[str, tuple[Tensor, Tensor]], dict[str, str]]:
    """label -> (images, labels) on the device in the model's layout, and label -> eval_set_fingerprint."""
    evals: dict[str, tuple[Tensor, Tensor]] = {}
    fingerprints: dict[str, str] = {}  # on every row of that label
    for entry in eval_sets:
        label, name, root, options = eval_request(entry)
        ex, ey = eval_set(data, name, root, options)
        evals[label] = (ex.to(settings.device).contiguous(memory_format=settings.memory_format),
                        ey.to(settings.device))
        fingerprints[label] = eval_set_fingerprint(data, name, root, options)
    return evals, fingerprints


def eval_steps(steps: int, eval_every: int, extra: Sequence[int] = ()) -> list[int]:
    return sorted(set(range(eval_every, steps + 1, eval_every)) | {steps} | set(extra))


# ----- training -------------------------------------------------------------------------------------

def build_model(cell: Cell, data: DataSet, settings: DeviceSettings) -> nn.Module:
    """The cell's model on its device: the same initial weights for every treatment of a (size, seed), the
    standardisation if asked, the invariance wrapper. Kept weights load into exactly this (`weights.py`)."""
    model = create_model(cell.model, width=cell.width, in_channels=data.channels, num_classes=data.num_classes)
    model = init_seeded(model, cell.seed)
    if cell.normalize:  # after the seeded init: the same weights whether or not inputs are standardised
        model = standardized(model, data.mean, data.std)
    return place_model(wrap_invariance(cell.invariance, model), settings)


def train_cell(
    cell: Cell,
    data: DataSet,
    eval_sets: Sequence[str | Mapping[str, Any]],
    *,
    device: str | torch.device = "cpu",
    on_step: Callable[[int], Any] | None = None,
    compile_model: bool = False,
    augment: Augment | None = None,
    checkpoint: Checkpointer | None = None,
    probes: ProbeSettings | None = None,
    deterministic: bool = False,
    on_eval: Callable[[int, list[Evaluation]], Any] | None = None,
    cuda_graph: bool = False,
) -> CellResult:
    """Train `cell` on `data` and evaluate on `eval_sets` at every eval step.

    `compile_model`: torch.compile the training forward and backward (opt-in: compiling costs tens of seconds,
    worth it only for long cells on a GPU). `augment` replaces the cell's policy (benchmarks time the paper's
    TrivialAugment + crop + flip pipeline, which is not one registered policy). `checkpoint`: save every
    `checkpoint.every` steps (at the end of an augmentation call, so the random streams resume exactly), and
    continue from the latest checkpoint if there is one: the result equals an uninterrupted run's.
    `eval_sets`: names, or the spec's mappings (label, name, root, options). `probes`: the spec's `probes`
    block (gradient noise, flatness, Hessian at chosen steps, on un-augmented training images). `on_eval` is told
    each evaluation step's evaluations as they are made (a search's pruner; it may raise `Pruned`).
    `cuda_graph`: on CUDA, replay the step from a CUDA graph (`graph_step.py`; not with micro-batches or
    `compile_model`); ignored elsewhere.
    """
    settings = device_settings(device, deterministic=deterministic)
    device = settings.device
    seed = cell.seed
    if device.type == "cpu":
        keep_freed_memory()

    # data on the device once; train_x stays NCHW (uint8 or float) for the augmentations, eval sets in the
    # model's layout
    idx = subset_indices(data, cell.data_size, seed, draw=cell.subset)
    train_x, train_y = data.train_x[idx].to(device), data.train_y[idx].to(device)
    evals, fingerprints = load_eval_sets(data, eval_sets, settings)
    model = build_model(cell, data, settings)
    step_model: nn.Module = torch.compile(model) if compile_model else model  # type: ignore[assignment]  # shares the parameters; eval stays eager
    optimizer = torch.optim.SGD(
        model.parameters(), lr=cell.lr, momentum=cell.momentum, nesterov=cell.nesterov and cell.momentum > 0,
        weight_decay=cell.weight_decay,
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, steps=cell.steps, warmup_steps=cell.warmup_steps)
    )
    if augment is None:
        augment = create_augmentation(cell.augmentation, cell.strength, fill=data.mean)

    # data order and augmentation draws have their own streams, so a treatment never shifts the order
    order_gen = torch.Generator().manual_seed(seed)
    aug_gen = torch.Generator(device=device).manual_seed(seed + 1_000_003)
    pool_x, pool_y = train_x, train_y
    if cell.views == "fixed":  # drawn once from a stream of their own: a resumed cell draws the same views
        views_gen = torch.Generator(device=device).manual_seed(seed + 2_000_003)
        pool_x = fixed_views(train_x, augment, views_gen, cell.views_r or 1, cell.views_first_clean)
        pool_y = train_y.repeat(cell.views_r or 1)
        augment = identity  # the views are augmented already
    if cell.views == "same_batch":
        k = cell.views_r or 1
        order = repeated(batch_indices(len(pool_y), cell.batch_size // k, cell.steps, order_gen), k)
    else:
        order = batch_indices(len(pool_y), cell.batch_size, cell.steps, order_gen)
    probe_steps = set(probes.steps or [cell.steps]) if probes is not None and probes.which() else set()

    evaluations: list[Evaluation] = []
    start_step, seconds_before = 0, 0.0
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        aug_gen.set_state(saved["aug_generator"].to("cpu"))
        evaluations = [Evaluation(**e) for e in saved["evaluations"]]
        start_step, seconds_before = int(saved["step"]), float(saved["train_seconds"])
        for _ in range(start_step):  # the data order is replayed from the seed, not stored
            next(order)
        if on_eval is not None:  # told again: a search trial's seeds meet at every evaluation step
            for done in sorted({e.step for e in evaluations}):
                on_eval(done, [e for e in evaluations if e.step == done])
    graphed = cuda_graph and device.type == "cuda" and cell.accumulate == 1 and not compile_model
    if graphed:  # after the schedule took its float base rates, and after a checkpoint's floats were loaded
        graph_optimizer(optimizer, device)
    step_fn = (GraphedStep(model, optimizer, settings) if graphed
               else lambda x, y: train_step(step_model, optimizer, x, y, settings, cell.accumulate))
    per_call = steps_per_augment_call(cell.batch_size, pool_x[0].nbytes, device)
    batches = augmented_batches(pool_x, pool_y, order, augment, aug_gen, steps=cell.steps - start_step,
                                batch_size=cell.batch_size, memory_format=settings.memory_format)

    checkpoints = set(eval_steps(cell.steps, cell.eval_every, sorted(probe_steps)))
    eval_seconds = 0.0
    last_saved = start_step
    model.train()
    t_start = time.perf_counter() - seconds_before
    for step, (xb, yb) in enumerate(batches, start=start_step + 1):
        loss = step_fn(xb, yb)
        schedule.step()
        if step % settings.check_every == 0 or step in checkpoints:
            value = loss.item()
            if not math.isfinite(value):
                raise NonFiniteLoss(f"non-finite training loss ({value}) at step {step}")
        if on_step is not None:
            on_step(step)
        if step in checkpoints:
            t_eval = time.perf_counter()
            train_seconds = t_eval - t_start - eval_seconds
            measured = (probe_cell(model, train_x, train_y, probes, settings.memory_format, seed + step)
                        if probes is not None and step in probe_steps else {})
            for name, (ex, ey) in evals.items():
                acc, eval_loss = evaluate(model, ex, ey, settings)
                evaluations.append(Evaluation(step, step == cell.steps, name, acc, eval_loss, len(ey),
                                              train_seconds, **measured, eval_set_fingerprint=fingerprints[name]))
            eval_seconds += time.perf_counter() - t_eval
            if on_eval is not None:
                on_eval(step, [e for e in evaluations if e.step == step])
        # at the end of an augmentation call the generators' states are those of a fresh call: resumable
        if (checkpoint is not None and (step - start_step) % per_call == 0 and step - last_saved >= checkpoint.every
                and step < cell.steps):
            if not finite_state(loss, model):  # the loss is checked only every check_every steps on a GPU
                raise NonFiniteLoss(f"non-finite training loss or weights at step {step} (no checkpoint saved)")
            checkpoint.save({
                "step": step, "model": model.state_dict(), "optimizer": eager_optimizer_state(optimizer),
                "schedule": schedule.state_dict(), "aug_generator": aug_gen.get_state(),
                "evaluations": [dataclasses.asdict(e) for e in evaluations],
                "train_seconds": time.perf_counter() - t_start - eval_seconds,
            })
            last_saved = step
    train_seconds = time.perf_counter() - t_start - eval_seconds
    return CellResult(evaluations, param_count(model), train_seconds, str(device), model)

