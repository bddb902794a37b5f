"""The paper's cell on one GPU: today's eager step beside the CUDA-graph step, and several cells sharing the card.

    PYTHONPATH=. python -m bench.gpu [--device cuda] [--parts step,profile,packing,accuracy] [--steps N]
                                     [--packing 1,2,4,8] [--out FILE.json] [--smoke]

Every figure comes from `train_cell`, the loop a sweep's cells run, on a cell of the paper's protocol: ResNet-18
(CIFAR stem) width 64, batch 128, TrivialAugment + crop + flip on the device (`trivialaugment_crop_flip`), bf16
autocast and channels_last (the CUDA defaults), evaluation left out of the timed window, on random 3x32x32 data
(50,000 images, as CIFAR's training set).

- step: steps/s of the eager step and of the graph (`execution.cuda_graph`), run alternately in one process,
  after a warm-up (cuDNN's autotuning, the capture); the ratio graph / eager is the figure.
- profile: 20 steps of each path under torch.profiler: per step, the kernels the GPU ran (a replayed graph runs
  as many as the eager step) and the launches the host made (the graph's saving: one `cudaGraphLaunch` for
  them all); the share of wall time the GPU spent in kernels and copies (streams that overlap can push it past
  1); the five ops with the most device time.
- packing: k = 1, 2, 4, 8 processes on one GPU, each training its own cell, as a sweep with
  `execution.gpus_per_cell: 1/k` runs them (Ray starts one worker process per cell). Each worker warms up,
  says so, and starts its timed steps when the parent has heard from all k (a pipe, no sleeps); the aggregate
  rate is k x steps over the span from the first start to the last finish. Cells per GPU-hour are for the
  paper's 60,000-step cell. Models: ResNet-18 w64 and w16, small_cnn w16; eager and graph.
- accuracy: the same short digits cell trained eager and with the graph on three seeds (final test accuracy,
  mean and spread), and the graph path twice in deterministic mode (identical rows, or not).

On a CPU (`--device cpu`, what `--smoke` uses) the graph is never built (`train_cell` ignores the flag there), so
the two paths are the same code and their ratio measures only noise; the parts run to check the bench itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import torch

from augworth.search_spaces.cells import Cell
from augworth.trainables.datasets import DataSet, load_dataset
from augworth.trainables.train import train_cell
from augworth.trainables.train_cli import random_dataset

PAPER_STEPS = 60_000
LAUNCHES = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx", "cudaGraphLaunch")
MODELS = {"resnet18_w64": ("resnet18", 64), "resnet18_w16": ("resnet18", 16), "small_cnn_w16": ("small_cnn", 16)}


def paper_cell(model: str, width: int, steps: int, *, seed: int = 0, data_size: int = 50_000,
               dataset: str = "random", batch_size: int = 128) -> Cell:
    return Cell(dataset=dataset, dataset_fingerprint=dataset, data_size=data_size, seed=seed,
                augmentation="trivialaugment_crop_flip", strength=None, model=model, width=width, steps=steps,
                batch_size=batch_size, eval_every=steps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4,
                warmup_steps=min(2_000, steps // 10))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # the GPU runs behind the host: time finished work


def timed_rate(cell: Cell, data: DataSet, device: torch.device, graph: bool, warmup: int) -> float:
    """Steps per second of `train_cell` over the steps after `warmup` (evaluation comes after the last)."""
    stamps: dict[int, float] = {}

    def on_step(step: int) -> None:
        if step in (warmup, cell.steps):
            sync(device)
            stamps[step] = time.perf_counter()

    train_cell(cell, data, [], device=device, on_step=on_step, cuda_graph=graph)
    return (cell.steps - warmup) / (stamps[cell.steps] - stamps[warmup])


def step_part(args: argparse.Namespace, device: torch.device, data: DataSet) -> list[dict[str, Any]]:
    model, width = MODELS[args.model]
    cell = paper_cell(model, width, args.warmup + args.steps, data_size=args.pool)
    rates: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.repeats):
        for graph in (False, True):  # alternating: a drift in the card's clock hits both
            rates[graph].append(timed_rate(cell, data, device, graph, args.warmup))
    eager, graphed = statistics.median(rates[False]), statistics.median(rates[True])
    return [{"part": "step", "model": args.model, "path": path, "steps_per_s": rate,
             "minutes_per_paper_cell": PAPER_STEPS / rate / 60, "ratio": rate / eager}
            for path, rate in (("eager", eager), ("graph", graphed))]


def profile_part(args: argparse.Namespace, device: torch.device, data: DataSet) -> list[dict[str, Any]]:
    from torch.profiler import ProfilerActivity, profile

    model, width = MODELS[args.model]
    window = 20
    cell = paper_cell(model, width, args.warmup + window, data_size=args.pool)
    rows = []
    for graph in (False, True):
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        prof = profile(activities=activities)
        stamps: dict[str, float] = {}

        def on_step(step: int, prof: Any = prof, stamps: dict[str, float] = stamps) -> None:
            if step == args.warmup:
                sync(device)
                prof.start()
                stamps["start"] = time.perf_counter()
            elif step == args.warmup + window:
                sync(device)
                stamps["end"] = time.perf_counter()
                prof.stop()

        train_cell(cell, data, [], device=device, on_step=on_step, cuda_graph=graph)
        events = prof.events()
        kernels = [e for e in events if e.device_type.name == "CUDA"]
        launches = [e for e in events if e.device_type.name == "CPU" and e.name in LAUNCHES]
        busy_us = sum(e.device_time for e in kernels) if kernels else 0.0
        ops = sorted(prof.key_averages(), key=lambda a: -(a.self_device_time_total if kernels else
                                                           a.self_cpu_time_total))
        rows.append({"part": "profile", "model": args.model, "path": "graph" if graph else "eager",
                     "kernels_per_step": len(kernels) / window, "host_launches_per_step": len(launches) / window,
                     "gpu_busy_share": busy_us / 1e6 / (stamps["end"] - stamps["start"]) if kernels else None,
                     "top_ops": [a.key for a in ops[:5]], "ratio": 1.0})
    return rows


def worker(args: argparse.Namespace) -> None:
    """One packed cell: warm up, say `ready`, wait for `go` on stdin, then time the rest and print it as JSON."""
    device = torch.device(args.device)
    model, width = MODELS[args.model]
    data = random_dataset((3, 32, 32), pool=args.pool, n_test=16)
    cell = paper_cell(model, width, args.warmup + args.steps, data_size=args.pool)
    stamps: dict[str, float] = {}

    def on_step(step: int) -> None:
        if step == args.warmup:
            sync(device)
            print("ready", flush=True)
            sys.stdin.readline()  # the parent's go, once every worker is ready
            stamps["start"] = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process on the machine
        elif step == cell.steps:
            sync(device)
            stamps["end"] = time.monotonic()

    train_cell(cell, data, [], device=device, on_step=on_step, cuda_graph=args.graph)
    print(json.dumps(stamps), flush=True)


def packed_rate(args: argparse.Namespace, model: str, k: int, graph: bool) -> float:
    command = [sys.executable, "-m", "bench.gpu", "--worker", "--model", model, "--device", args.device,
               "--steps", str(args.steps), "--warmup", str(args.warmup), "--pool", str(args.pool),
               *(["--graph"] if graph else [])]
    procs = [subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(k)]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", "a packed worker failed"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    spans = []
    for proc in procs:
        out, _ = proc.communicate(timeout=3600)
        assert proc.returncode == 0, f"a packed worker exited {proc.returncode}"
        spans.append(json.loads(out.strip().splitlines()[-1]))
    span = max(s["end"] for s in spans) - min(s["start"] for s in spans)
    return k * args.steps / span


def packing_part(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for model in args.packing_models.split(","):
        base = None
        for graph in (path == "graph" for path in args.packing_paths.split(",")):
            for k in (int(v) for v in args.packing.split(",")):
                rate = packed_rate(args, model, k, graph)
                base = base or rate  # k = 1, eager: today's one cell per GPU
                rows.append({"part": "packing", "model": model, "path": "graph" if graph else "eager",
                             "cells_per_gpu": k, "steps_per_s": rate,
                             "paper_cells_per_gpu_hour": rate * 3600 / PAPER_STEPS, "ratio": rate / base})
    return rows


def accuracy_part(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    data = load_dataset("digits")
    finals: dict[str, list[float]] = {"eager": [], "graph": []}
    for seed in range(3):
        cell = dataclasses.replace(paper_cell("resnet18", 16, args.accuracy_steps, seed=seed, data_size=1000,
                                              dataset="digits", batch_size=64), dataset_fingerprint=data.fingerprint)
        for path in finals:
            result = train_cell(cell, data, ["test"], device=device, cuda_graph=path == "graph")
            finals[path].append(next(e.accuracy for e in result.evaluations if e.final))
    cell = dataclasses.replace(paper_cell("resnet18", 16, args.accuracy_steps // 4, data_size=1000, dataset="digits",
                                          batch_size=64), dataset_fingerprint=data.fingerprint)
    twice = [[dataclasses.astuple(e)[:5] for e in train_cell(cell, data, ["test"], device=device, cuda_graph=True,
                                                              deterministic=True).evaluations] for _ in range(2)]
    rows = [{"part": "accuracy", "path": path, "final_accuracy_mean": statistics.mean(v),
             "final_accuracy_sd": statistics.stdev(v), "seeds": len(v),
             "ratio": statistics.mean(v) / statistics.mean(finals["eager"])} for path, v in finals.items()]
    rows.append({"part": "accuracy", "path": "graph, deterministic, twice", "identical": twice[0] == twice[1],
                 "ratio": 1.0})
    return rows


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--parts", default="step,profile,packing,accuracy")
    parser.add_argument("--model", default="resnet18_w64", choices=sorted(MODELS))
    parser.add_argument("--steps", type=int, default=600, help="timed steps")
    parser.add_argument("--warmup", type=int, default=100, help="steps before the timed ones")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--packing", default="1,2,4,8")
    parser.add_argument("--packing-models", default="resnet18_w64,resnet18_w16,small_cnn_w16")
    parser.add_argument("--packing-paths", default="eager,graph", help="eager first: its k = 1 is the baseline")
    parser.add_argument("--pool", type=int, default=50_000, help="random training images of a packed cell")
    parser.add_argument("--accuracy-steps", type=int, default=2_000)
    parser.add_argument("--out", help="write the rows here as JSON")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU: checks the bench, times nothing")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--graph", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.device, args.model, args.steps, args.warmup, args.repeats = "cpu", "small_cnn_w16", 6, 4, 1
        args.packing, args.packing_models, args.pool, args.accuracy_steps = "1,2", "small_cnn_w16", 512, 8
        args.packing_paths = "eager"
    if args.worker:
        worker(args)
        return []
    device = torch.device(args.device)
    parts = args.parts.split(",")
    data = random_dataset((3, 32, 32), pool=args.pool, n_test=16) if {"step", "profile"} & set(parts) else None
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"bench.gpu on {name}, torch {torch.__version__}", flush=True)
    runs = {"step": lambda: step_part(args, device, data), "profile": lambda: profile_part(args, device, data),
            "packing": lambda: packing_part(args), "accuracy": lambda: accuracy_part(args, device)}
    rows: list[dict[str, Any]] = []
    for part in (p for p in runs if p in parts):
        rows += (done := runs[part]())
        for row in done:  # each part's rows as soon as it ends: a run stopped at its time limit keeps them
            print("  " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()),
                  flush=True)
        if args.out:
            with open(args.out, "w") as f:
                json.dump({"device": name, "torch": torch.__version__, "rows": rows}, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
