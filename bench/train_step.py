"""A training step with augmentation vs the same step without, through train_cell itself, one thread.

    python -m bench.train_step [--smoke] [--threads N] [--repeats R] [--timed-steps T]
                               [--steps-per-call S] [--call-bytes N] [--only small_cnn|resnet18]
                               [--layout | --narrow-nchw]

Two workloads: small_cnn width 16 on the digits data (1x16x16, batch 64), and resnet18 width 16 (CIFAR stem)
on random 3x32x32 data (batch 128). Variants: no augmentation (`none`), and trivialaugment -> crop(4) -> flip
(the paper's pipeline). Each run is one `train_cell` call, so the loop is exactly the one cells pay for:
index gather, batched augmentation of several steps' batches per call (AUGMENT_STEPS_PER_CALL, at most
AUGMENT_CALL_BYTES_CPU of images), channels_last copy,
forward, backward, SGD step, schedule, NaN check. Time is taken between `on_step` calls at chunk boundaries,
leaving out the first chunk (first touch of fresh memory, oneDNN's kernel choice); every interval holds one
augmentation call and the steps it feeds. Variants alternate run by run (A B A B ...), and the figures are
medians: ms per step of each, and the ratio with augmentation / without (also the median of the per-repeat
ratios, which cancels slow drifts in the machine's load). A third ratio adds the time measured inside the
augmentation call to the baseline's step: on resnet18 the augmentation is ~1% of a step, below what load
drifts on a shared machine do to whole-step medians. `--layout` instead compares channels_last with NCHW, both
without augmentation; `--narrow-nchw` compares channels_last for every convolution (unsafe on AVX2 CPUs at
widths <= 6, safe at width 16) with the trainer's CPU default, which keeps convolutions of fewer than
CPU_MIN_CHANNELS_LAST_INPUTS input channels (here: the stems) in NCHW.

Needs only torch and torchvision (and scikit-learn's wheel for digits), like `python -m augworth.trainables.train_cli`.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from augworth.search_spaces.cells import Cell
from augworth.trainables import device, train, train_cli
from augworth.trainables.datasets import DataSet, load_dataset

PIPELINE = "trivialaugment+crop+flip"


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    model: str
    width: int
    batch_size: int
    data: Callable[[], DataSet]


WORKLOADS = {
    "small_cnn": Workload("small_cnn, digits 1x16x16", "small_cnn", 16, 64, lambda: load_dataset("digits")),
    "resnet18": Workload("resnet18, random 3x32x32", "resnet18", 16, 128,
                         lambda: train_cli.random_dataset((3, 32, 32), pool=4096, n_test=16)),
}


@dataclasses.dataclass(frozen=True)
class Variant:
    pipeline: str  # augmentation policies joined by '+'
    channels_last: bool = True  # device.CHANNELS_LAST
    min_channels_last_inputs: int = device.CPU_MIN_CHANNELS_LAST_INPUTS


def cell_for(work: Workload, data: DataSet, steps: int) -> Cell:
    return Cell(
        dataset=data.name, dataset_fingerprint=data.fingerprint, data_size=data.pool_size, seed=0,
        augmentation="none", strength=None, model=work.model, width=work.width, steps=steps,
        batch_size=work.batch_size, eval_every=steps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4,
        warmup_steps=0)


def timed_run(cell: Cell, data: DataSet, augment: train.Augment,
              per_call: int) -> tuple[list[float], list[float]]:
    """One train_cell run. Per augmentation chunk but the first: ms per step of the whole loop, and ms per
    step spent inside the augmentation call."""
    stamps: list[float] = []
    augment_ms: list[float] = []

    def on_step(step: int) -> None:
        if step % per_call == 0:
            stamps.append(time.perf_counter())

    def timed_augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        t0 = time.perf_counter()
        out = augment(x, generator)
        augment_ms.append((time.perf_counter() - t0) * 1e3 / per_call)
        return out

    train.train_cell(cell, data, [], on_step=on_step, augment=timed_augment)
    return [(b - a) * 1e3 / per_call for a, b in zip(stamps, stamps[1:], strict=False)], augment_ms[1:]


def compare(work: Workload, data: DataSet, variants: dict[str, Variant], *, repeats: int,
            chunks: int, per_call: int) -> dict[str, Any]:
    """variants: label -> Variant, the baseline first."""
    cell = cell_for(work, data, steps=(chunks + 1) * per_call)
    augments = {label: train_cli.pipeline(v.pipeline, data.mean) for label, v in variants.items()}
    times: dict[str, list[float]] = {label: [] for label in variants}
    in_augment: dict[str, list[float]] = {label: [] for label in variants}
    per_repeat: dict[str, list[float]] = {label: [] for label in variants}
    layout = device.CHANNELS_LAST, device.CPU_MIN_CHANNELS_LAST_INPUTS
    try:
        for _ in range(repeats):
            for label, variant in variants.items():
                device.CHANNELS_LAST = variant.channels_last
                device.CPU_MIN_CHANNELS_LAST_INPUTS = variant.min_channels_last_inputs
                step_ms, augment_ms = timed_run(cell, data, augments[label], per_call)
                times[label] += step_ms
                in_augment[label] += augment_ms
                per_repeat[label].append(statistics.median(step_ms))
    finally:
        device.CHANNELS_LAST, device.CPU_MIN_CHANNELS_LAST_INPUTS = layout
    a, b = variants
    median = {label: statistics.median(t) for label, t in times.items()}
    augment_ms = {label: statistics.median(t) for label, t in in_augment.items()}
    return {
        "median_ms": median,
        "augment_ms": augment_ms,
        "ratio": median[b] / median[a],
        "paired_ratio": statistics.median(y / x for x, y in zip(per_repeat[a], per_repeat[b], strict=True)),
        # the baseline's step plus the time measured inside the augmentation call: robust to load drifts,
        # which shift the whole-step medians by more than the augmentation costs on a big model
        "inside_ratio": (median[a] + augment_ms[b] - augment_ms[a]) / median[a],
        "intervals": len(times[a]),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    parser = argparse.ArgumentParser(prog="python -m bench.train_step", description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5, help="runs of each variant, interleaved")
    parser.add_argument("--timed-steps", type=int, default=None,
                        help="steps timed per run, in whole chunks (default: 64 small_cnn, 16 resnet18)")
    parser.add_argument("--steps-per-call", type=int, default=train.AUGMENT_STEPS_PER_CALL,
                        help="AUGMENT_STEPS_PER_CALL: steps' batches augmented per call")
    parser.add_argument("--call-bytes", type=int, default=None,
                        help="AUGMENT_CALL_BYTES_CPU: cap on the images augmented per call, in bytes")
    parser.add_argument("--only", choices=sorted(WORKLOADS), default=None)
    layout = parser.add_mutually_exclusive_group()
    layout.add_argument("--layout", action="store_true", help="channels_last vs NCHW, no augmentation")
    layout.add_argument("--narrow-nchw", action="store_true",
                        help="every conv channels_last vs narrow convs NCHW (the CPU default), no augmentation")
    parser.add_argument("--smoke", action="store_true", help="a couple of steps of tiny models (for tests)")
    args = parser.parse_args(argv)

    workloads = {k: w for k, w in WORKLOADS.items() if args.only in (None, k)}
    if args.smoke:
        # width 8: no convolution narrower than 8 inputs but the stems, so --narrow-nchw's baseline is safe
        workloads = {k: dataclasses.replace(w, width=8, batch_size=8) for k, w in workloads.items()}
    if args.layout:
        variants = {"NCHW": Variant("none", channels_last=False), "channels_last": Variant("none")}
    elif args.narrow_nchw:
        variants = {"channels_last everywhere": Variant("none", min_channels_last_inputs=0),
                    "narrow convs NCHW": Variant("none")}
    else:
        variants = {"none": Variant("none"), PIPELINE: Variant(PIPELINE)}

    threads = torch.get_num_threads()
    saved = train.AUGMENT_STEPS_PER_CALL, train.AUGMENT_CALL_BYTES_CPU
    torch.set_num_threads(args.threads)
    results = {}
    try:
        train.AUGMENT_STEPS_PER_CALL = 2 if args.smoke else args.steps_per_call
        if args.call_bytes is not None:
            train.AUGMENT_CALL_BYTES_CPU = args.call_bytes
        for key, work in workloads.items():
            data = work.data()
            image_bytes = data.train_x[0].nbytes
            per_call = train.steps_per_augment_call(work.batch_size, image_bytes, torch.device("cpu"))
            timed = args.timed_steps or (64 if key == "small_cnn" else 16)
            chunks = 1 if args.smoke else -(-timed // per_call)
            repeats = 1 if args.smoke else args.repeats
            r = compare(work, data, variants, repeats=repeats, chunks=chunks, per_call=per_call)
            results[key] = r
            a, b = variants
            print(f"{work.name}, width {work.width}, batch {work.batch_size}, {args.threads} thread(s), "
                  f"{per_call} steps per augmentation call; {repeats} interleaved runs, "
                  f"{r['intervals']} timed chunks in all")
            for label in variants:
                print(f"  {label + ':':32s} {r['median_ms'][label]:8.2f} ms/step (median), "
                      f"{r['augment_ms'][label]:6.3f} ms/step of it inside the augmentation call")
            inside = ("" if args.layout or args.narrow_nchw
                      else f", {r['inside_ratio']:.3f} (baseline + time inside augmentation)")
            print(f"  ratio {b} / {a}: {r['ratio']:.3f} (medians), "
                  f"{r['paired_ratio']:.3f} (median per repeat){inside}")
    finally:
        torch.set_num_threads(threads)
        train.AUGMENT_STEPS_PER_CALL, train.AUGMENT_CALL_BYTES_CPU = saved
    return results


if __name__ == "__main__":
    main()
