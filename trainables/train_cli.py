"""The training command line: one cell, or a timing run on random data. It needs nothing but torch and
torchvision (GPU boxes often carry an older torch and none of our other dependencies):

    python -m augworth.trainables.train_cli --cell CELL.json [--eval-sets test ...]
                               [--dataset-root R --dataset-options J] [--device cuda] [--compile]
                               [--cuda-graph] [--out F]
    python -m augworth.trainables.train_cli --random-data 3x32x32 --steps 200 [--model resnet18 --width 16 ...]

Rows come from the store's one row builder, `results.rows`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from augworth.results.rows import cell_rows
from augworth.search_spaces.cells import Cell

from .augmentations import Augment, create_augmentation
from .datasets import DataSet, load_dataset
from .train import train_cell

Tensor = torch.Tensor


def read_cell(text_or_path: str, index: int = 0) -> Cell:
    """A cell from inline JSON, a JSON file, or line `index` of a JSON-lines file (`Cell.to_dict` fields)."""
    text = text_or_path if text_or_path.lstrip().startswith("{") else Path(text_or_path).read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = json.loads([line for line in text.splitlines() if line.strip()][index])
    cell: Cell = Cell.from_dict(data)
    return cell


def random_dataset(shape: tuple[int, int, int], pool: int, n_test: int = 1024,
                   num_classes: int = 10) -> DataSet:
    """Uniform noise with random labels, for timing only (no fingerprint: hashing 50k images is slow)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand((pool + n_test, *shape), generator=gen)
    y = torch.randint(0, num_classes, (pool + n_test,), generator=gen)
    return DataSet("random", x[:pool], y[:pool], x[pool:], y[pool:], num_classes, fingerprint="random",
                   mean=(0.5,) * shape[0])


def pipeline(names: str, fill: Sequence[float]) -> Augment:
    """Policies joined by '+' ('trivialaugment+crop+flip'), applied left to right at default strengths."""
    policies = [create_augmentation(name, fill=fill) for name in names.split("+")]

    def augment(x: Tensor, generator: torch.Generator) -> Tensor:
        for policy in policies:
            x = policy(x, generator)
        return x

    return augment


def _time_random_data(args: argparse.Namespace) -> None:
    shape = tuple(int(s) for s in args.random_data.lower().split("x"))
    if len(shape) != 3:
        raise SystemExit(f"--random-data takes CxHxW, e.g. 3x32x32; got {args.random_data!r}")
    data = random_dataset(shape, args.pool)
    cell = Cell(
        dataset="random", dataset_fingerprint="random", data_size=args.pool, seed=0, augmentation="none",
        strength=None, model=args.model, width=args.width, steps=args.steps, batch_size=args.batch_size,
        eval_every=args.steps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4, warmup_steps=0,
    )
    device = torch.device(args.device)
    stamps: dict[int, float] = {}
    warmup = min(args.warmup_steps, args.steps - 1)

    def on_step(step: int) -> None:
        if step in (warmup, args.steps):
            if device.type == "cuda":
                torch.cuda.synchronize(device)  # the GPU runs behind the host: time finished work
            stamps[step] = time.perf_counter()

    result = train_cell(cell, data, ["test"], device=device, on_step=on_step, compile_model=args.compile,
                        augment=pipeline(args.augmentation, data.mean), cuda_graph=args.cuda_graph)
    rate = (args.steps - warmup) / (stamps[args.steps] - stamps[warmup])
    print(f"{args.model} width {args.width}, {args.random_data} random data, batch {args.batch_size}, "
          f"augmentation {args.augmentation}, {result.device}{' compiled' if args.compile else ''}"
          f"{' CUDA graph' if args.cuda_graph else ''}, "
          f"{torch.get_num_threads()} threads")
    print(f"  {rate:.2f} steps/s over steps {warmup + 1}..{args.steps} "
          f"({rate * args.batch_size:.0f} images/s); 60k steps would take {60_000 / rate / 3600:.2f} h")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m augworth.trainables.train_cli",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--cell", help="a cell as JSON: inline, a file, or a JSON-lines file (--cell-index)")
    parser.add_argument("--cell-index", type=int, default=0, help="line of a JSON-lines --cell file")
    parser.add_argument("--eval-sets", nargs="+", default=["test"],
                        help='names, or JSON mappings as in a spec: \'{"name": "cifar10c", "root": "/d/c"}\'')
    parser.add_argument("--dataset-root", default=None)
    parser.add_argument("--dataset-options", default="{}", help='the spec\'s dataset.options as JSON')
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile", action="store_true", help="torch.compile the training step")
    parser.add_argument("--cuda-graph", action="store_true", help="replay the step from a CUDA graph (CUDA only)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", help="append the rows here as JSON lines (default: print them)")
    timing = parser.add_argument_group("timing on random data (instead of --cell)")
    timing.add_argument("--random-data", metavar="CxHxW", help="e.g. 3x32x32")
    timing.add_argument("--steps", type=int, default=200)
    timing.add_argument("--warmup-steps", type=int, default=50, help="steps left out of the rate")
    timing.add_argument("--model", default="resnet18")
    timing.add_argument("--width", type=int, default=16)
    timing.add_argument("--batch-size", type=int, default=128)
    timing.add_argument("--pool", type=int, default=50_000, help="random training images")
    timing.add_argument("--augmentation", default="trivialaugment+crop+flip", help="policies joined by '+'")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if (args.cell is None) == (args.random_data is None):
        parser.error("give exactly one of --cell and --random-data")
    if args.random_data is not None:
        _time_random_data(args)
        return 0

    cell = read_cell(args.cell, args.cell_index)
    data = load_dataset(cell.dataset, args.dataset_root, options=json.loads(args.dataset_options))
    if data.fingerprint != cell.dataset_fingerprint:
        print(f"data set fingerprint {data.fingerprint} != the cell's {cell.dataset_fingerprint}",
              file=sys.stderr)
        return 2
    eval_sets = [json.loads(e) if e.lstrip().startswith("{") else e for e in args.eval_sets]
    result = train_cell(cell, data, eval_sets, device=args.device, compile_model=args.compile,
                        cuda_graph=args.cuda_graph)
    rows = cell_rows(cell, [dataclasses.asdict(e) for e in result.evaluations], param_count=result.param_count,
                     device=result.device, torch_version=torch.__version__)
    lines = [json.dumps(row, default=str) for row in rows]
    if args.out:
        with open(args.out, "a") as f:
            f.writelines(line + "\n" for line in lines)
    else:
        print("\n".join(lines))
    final = {e.eval_set: e.accuracy for e in result.evaluations if e.final}
    print(f"cell {cell.cell_key}: {result.train_seconds:.1f} s training on {result.device}, "
          f"final accuracy {final}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
