"""Batched augmentation vs the paper's per-image PIL pipeline, one thread.

    python -m bench.augment [--policy trivialaugment_crop_flip | --all] [--n 1024] [--repeats 7]
                            [--default-malloc] [--smoke]

Baseline: the torchvision.transforms pipeline of the policy (for the default, TrivialAugmentWide +
RandomCrop(32, padding=4) + RandomHorizontalFlip) on PIL images, one image at a time (how a CIFAR DataLoader
worker augments). Ours: the registered policy from trainables.augmentations on one float batch (N, 3, 32, 32).
Both start from images already in memory (PIL images for the baseline, a float tensor for ours). The ratio
leaves out the PIL pipeline's conversion to a tensor (ToTensor), which a DataLoader also pays; a second line
shows it with that included.
Prints images/s of each (medians of interleaved rounds) and the ratio ours / PIL.

The process runs as a training process does: train_cell has glibc keep freed memory for reuse
(trainables.device.keep_freed_memory). Under glibc's defaults, whether our batch-sized temporaries are
page-faulted in afresh on every run depends on how the PIL runs left the heap: ~8,000 faults per run (and
half the speed) in some processes, none in others. `--default-malloc` leaves glibc's defaults.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import torch
from PIL import Image
from torchvision import transforms

from augworth.trainables.augmentations import create_augmentation
from augworth.trainables.device import keep_freed_memory


def median_seconds(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median time of each function over `repeats` rounds that run them in turn, after two untimed rounds.

    The untimed rounds take the one-off costs: lazy imports, and, for ours, the first touch of freshly mapped
    memory for the batch-sized temporaries (page faults cost about as much as the augmentation itself on
    this VM, and a training loop pays them only on its first steps). Running the contenders in turn, round
    by round, exposes both to the same load from other processes; medians discard the disturbed rounds.
    """
    for _ in range(2):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def pil_pipeline(policy: str) -> transforms.Compose:
    """The torchvision pipeline the paper's code ran for `policy` (policy first, then crop, then flip)."""
    crop_flip = [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()]
    first = {
        "trivialaugment_crop_flip": [transforms.TrivialAugmentWide()],
        "randaugment_crop_flip": [transforms.RandAugment(num_ops=2, magnitude=9)],
        "crop_flip": [],
        "autoaugment": [transforms.AutoAugment(transforms.AutoAugmentPolicy.CIFAR10)],
        "augmix": [transforms.AugMix()],
        "perspective": [transforms.RandomPerspective(0.5)],
    }[policy]
    return transforms.Compose(first + (crop_flip if policy.endswith("crop_flip") else []))


POLICIES = ("trivialaugment_crop_flip", "randaugment_crop_flip", "crop_flip", "autoaugment", "augmix",
            "perspective")


def main(argv: Sequence[str] | None = None) -> float:
    parser = argparse.ArgumentParser(prog="python -m bench.augment", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1024, help="images per timed run")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds; medians count")
    parser.add_argument("--default-malloc", action="store_true",
                        help="leave glibc's handling of freed memory at its defaults")
    parser.add_argument("--smoke", action="store_true", help="tiny run for tests (n=32, one repeat)")
    parser.add_argument("--policy", default="trivialaugment_crop_flip", choices=POLICIES)
    parser.add_argument("--all", action="store_true", help="every policy in turn; returns the smallest ratio")
    args = parser.parse_args(argv)
    if args.all:
        rest = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--all"]
        return min(main([*rest, "--policy", policy]) for policy in POLICIES)
    n, repeats = (32, 1) if args.smoke else (args.n, args.repeats)
    if not args.default_malloc:
        keep_freed_memory()

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a DataLoader worker, or one trial's core, gets one thread
    try:
        seed = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (n, 32, 32, 3), dtype=torch.uint8, generator=seed)  # (N, H, W, C)

        # baseline: the paper's pipeline, per PIL image
        pil_images = [Image.fromarray(a.numpy()) for a in images]
        pipeline = pil_pipeline(args.policy)

        def run_pil() -> None:
            for image in pil_images:
                pipeline(image)

        def run_pil_to_tensor() -> None:
            for image in pil_images:
                transforms.functional.to_tensor(pipeline(image))

        # ours: the same policy on the whole float batch, (N, 3, 32, 32) in [0, 1], in the usual contiguous
        # layout (a bare permute would leave it channels-last, which every op pays for)
        batch = images.permute(0, 3, 1, 2).float().div(255).contiguous()
        augment = create_augmentation(args.policy)
        generator = torch.Generator().manual_seed(0)

        def run_ours() -> None:
            augment(batch, generator)

        contenders = {"pil": run_pil, "pil_to_tensor": run_pil_to_tensor, "ours": run_ours}
        seconds = median_seconds(contenders, repeats)
        pil_rate, pil_tensor_rate, ours_rate = (n / seconds[k] for k in ("pil", "pil_to_tensor", "ours"))
    finally:
        torch.set_num_threads(threads)

    ratio = ours_rate / pil_rate
    rows = [
        (f"PIL per image ({' + '.join(type(t).__name__ for t in pipeline.transforms)})", pil_rate),
        ("... the same, then ToTensor", pil_tensor_rate),
        (f"batched tensors ({args.policy})", ours_rate),
    ]
    malloc = "glibc defaults" if args.default_malloc else "freed memory kept for reuse, as in train_cell"
    print(f"augment {n} images of 3x32x32, 1 thread, medians of {repeats} interleaved rounds ({malloc})")
    for label, rate in rows:
        print(f"  {label + ':':64s} {rate:10.0f} images/s")
    goal = " (goal >= 10x)" if args.policy == "trivialaugment_crop_flip" else ""
    print(f"  ratio ours/PIL: {ratio:.1f}x{goal}; with ToTensor: {ours_rate / pil_tensor_rate:.1f}x")
    return ratio


if __name__ == "__main__":
    main()
