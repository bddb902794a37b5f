"""Run by test_cpu_kernels.py in a fresh interpreter (so that a heap corruption kills this process, never
pytest): train every registered model at widths 2-8 (and, on one thread, its default width), on every input shape
the data sets produce, for a few steps through `train_cell`, on `--threads` threads. Prints one line per training and
`DONE n` at the end; exits non-zero on the first non-finite loss or error.

    python tests/kernel_child.py --threads 1
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from augworth.search_spaces.cells import Cell  # noqa: E402
from augworth.trainables.models import MODELS  # noqa: E402
from augworth.trainables.train import train_cell  # noqa: E402
from augworth.trainables.train_cli import random_dataset  # noqa: E402

SHAPES = ((1, 16, 16), (3, 16, 16), (3, 32, 32))  # digits and generated data; CIFAR, CINIC-10
WIDTHS = (2, 3, 4, 5, 6, 7, 8)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    done = 0
    for shape in SHAPES:
        data = random_dataset(shape, pool=2 * args.batch_size, n_test=args.batch_size)
        for name in MODELS.names():
            # the default widths (ConvMixer's 256 above all) cost as much as all narrow ones: once per ISA is
            # enough, since the shapes that corrupted were narrow at any thread count
            default = (MODELS.get(name).meta["default_width"],) if args.threads == 1 else ()
            for width in (*WIDTHS, *default):
                cell = Cell(
                    dataset="random", dataset_fingerprint="random", data_size=data.pool_size, seed=0,
                    augmentation="none", strength=None, model=name, width=width, steps=args.steps,
                    batch_size=args.batch_size, eval_every=args.steps, lr=0.05, momentum=0.9, nesterov=True,
                    weight_decay=5e-4, warmup_steps=0)
                t0 = time.perf_counter()
                result = train_cell(cell, data, ["test"])  # raises NonFiniteLoss on a NaN training loss
                loss = result.evaluations[-1].loss
                print(f"{name} width {width} {'x'.join(map(str, shape))}: loss {loss:.4f} "
                      f"({time.perf_counter() - t0:.2f} s)", flush=True)
                if not math.isfinite(loss):
                    print(f"non-finite evaluation loss: {name} width {width} {shape}", file=sys.stderr)
                    return 1
                done += 1
    print(f"DONE {done}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
