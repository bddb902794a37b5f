"""The fast training path: resnet18, device settings, batched chunks, the Ray-free command line and its
imports, the train-step benchmark's smoke run, and determinism on CPU with all of it on."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from factories import make_cell

from augworth.trainables import device, train
from augworth.trainables.augmentations.simple import shift, shift_padded
from augworth.trainables.datasets import load_dataset
from augworth.trainables.device import device_settings
from augworth.trainables.models import MODELS, create_model, param_count
from augworth.trainables.train import train_cell
from augworth.trainables.train_cli import main, random_dataset, read_cell

ROOT = Path(__file__).resolve().parents[1]
NOT_FOR_THE_COMMAND_LINE = ("ray", "pydantic", "yaml", "pandas", "pyarrow", "sklearn", "augworth.orchestrator")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def tiny_cell(digits, **over):
    base = make_cell(dataset_fingerprint=digits.fingerprint, model="small_cnn", width=4, steps=8,
                     batch_size=16, eval_every=4, warmup_steps=2, data_size=60, augmentation="trivialaugment",
                     strength=None)
    return dataclasses.replace(base, **over)


# ----- resnet18 -------------------------------------------------------------------------------------

def test_resnet18_is_the_cifar_resnet18_at_width_64():
    model = create_model("resnet18", width=64, in_channels=3, num_classes=10)
    assert param_count(model) == 11_173_962  # the CIFAR ResNet-18 (3x3 stem, no max-pool, 1x1 shortcuts)
    stem = model[0]
    assert isinstance(stem, torch.nn.Conv2d) and stem.kernel_size == (3, 3) and stem.stride == (1, 1)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in model.modules())
    assert "resnet18" in MODELS


def test_resnet18_output_and_width_scaling():
    small = create_model("resnet18", width=16, in_channels=3, num_classes=10)
    assert small(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    gray = create_model("resnet18", width=4, in_channels=1, num_classes=7)
    assert gray(torch.rand(3, 1, 16, 16)).shape == (3, 7)
    counts = [param_count(create_model("resnet18", width=w, in_channels=3, num_classes=10))
              for w in (8, 16, 32)]
    assert all(3.5 < b / a < 4.1 for a, b in zip(counts, counts[1:], strict=False))  # ~quadratic in width
    default = create_model("resnet18", in_channels=3, num_classes=10)
    assert param_count(default) == 11_173_962  # width 64 by default


# ----- device settings and batches -------------------------------------------------------------------

def test_cpu_trains_in_fp32_channels_last_and_accelerators_in_bf16():
    cpu = device_settings("cpu")
    assert cpu.autocast_dtype is None and cpu.memory_format == torch.channels_last and cpu.check_every == 1
    gpu = device_settings("cuda")  # settings only: nothing is allocated
    assert gpu.autocast_dtype == torch.bfloat16 and gpu.check_every > 1


def test_augmented_batches_chunk_within_the_byte_cap_and_keep_the_order():
    x = torch.arange(40, dtype=torch.float32).view(40, 1, 1, 1).expand(40, 1, 4, 4).contiguous()
    y = torch.arange(40)
    order = train.batch_indices(40, 8, 11, torch.Generator().manual_seed(0))
    expected = list(train.batch_indices(40, 8, 11, torch.Generator().manual_seed(0)))
    calls = []

    def augment(xb, gen):
        calls.append(len(xb))
        return xb

    batches = list(train.augmented_batches(x, y, order, augment, torch.Generator(), steps=11, batch_size=8))
    per_call = train.steps_per_augment_call(8, x[0].nbytes, torch.device("cpu"))
    assert per_call == train.AUGMENT_STEPS_PER_CALL  # tiny images: the step cap, not the byte cap
    assert calls == [8 * per_call] * (11 // per_call) + ([8 * (11 % per_call)] if 11 % per_call else [])
    assert len(batches) == 11
    for (xb, yb), idx in zip(batches, expected, strict=True):
        assert torch.equal(yb, idx) and torch.equal(xb[:, 0, 0, 0], idx.float())
    # CIFAR-sized batches of 128 on CPU: as many steps as fit in AUGMENT_CALL_BYTES_CPU
    image = 3 * 32 * 32 * 4
    assert train.steps_per_augment_call(128, image, torch.device("cpu")) == min(
        train.AUGMENT_STEPS_PER_CALL, train.AUGMENT_CALL_BYTES_CPU // (128 * image))
    assert train.steps_per_augment_call(10_000, image, torch.device("cpu")) == 1


@pytest.mark.parametrize(("b", "c", "h", "w", "pad"), [(64, 3, 8, 8, 2), (9, 1, 6, 7, 3), (3, 3, 5, 4, 4),
                                                       (2, 1, 4, 4, 6), (1, 3, 4, 4, 1)])
def test_shift_without_a_padded_copy_equals_the_padded_windows(b, c, h, w, pad):
    # crop's fast path reads the unpadded batch and zeroes what falls outside; the first and last images,
    # and every extreme shift, must come out as RandomCrop's zero-padded windows do
    gen = torch.Generator().manual_seed(b + pad)
    x = torch.rand(b, c, h, w, generator=gen)
    for _ in range(5):
        dy = torch.randint(-pad, pad + 1, (b,), generator=gen)
        dx = torch.randint(-pad, pad + 1, (b,), generator=gen)
        dy[0], dx[0], dy[-1], dx[-1] = -pad, -pad, pad, pad
        ref = shift_padded(x, dy, dx, pad)
        padded = F.pad(x, (pad, pad, pad, pad))
        for i in (0, b - 1):  # the reference itself, spelled out
            top, left = int(dy[i]) + pad, int(dx[i]) + pad
            assert torch.equal(ref[i], padded[i, :, top : top + h, left : left + w])
        assert torch.equal(shift(x, dy, dx, pad), ref)


# ----- training -------------------------------------------------------------------------------------

def test_train_cell_is_deterministic_on_cpu_with_trivialaugment_and_channels_last(digits):
    cell = tiny_cell(digits, steps=20, eval_every=10)  # 20 steps: more than one augmentation call
    a = train_cell(cell, digits, ["test"])
    b = train_cell(cell, digits, ["test"])
    assert [(e.accuracy, e.loss) for e in a.evaluations] == [(e.accuracy, e.loss) for e in b.evaluations]
    other = train_cell(dataclasses.replace(cell, seed=1), digits, ["test"])
    assert [e.loss for e in other.evaluations] != [e.loss for e in a.evaluations]


def test_train_cell_takes_a_replacement_augmentation(digits):
    seen = []

    def augment(x, gen):
        seen.append(x.shape)
        return x

    train_cell(tiny_cell(digits, steps=3, eval_every=3), digits, [], augment=augment)
    assert seen and all(s[1:] == (1, 16, 16) for s in seen)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_train_cell_on_cuda_bf16_and_compiled_and_its_kept_weights_evaluate_the_same(digits, tmp_path):
    from augworth.trainables.trainable import CellContext, run_cell
    from augworth.trainables.weights import evaluate_weights, load_weights

    cell = tiny_cell(digits, steps=6, eval_every=3)
    result = train_cell(cell, digits, ["test"], device="cuda")
    assert result.device.startswith("cuda") and all(0 <= e.accuracy <= 1 for e in result.evaluations)
    compiled = train_cell(cell, digits, ["test"], device="cuda", compile_model=True)
    assert len(compiled.evaluations) == len(result.evaluations)
    # a GPU cell of a sweep with execution.keep_weights: its weights, evaluated again, give its logged numbers
    report = run_cell(cell, CellContext(eval_sets=("test",), gpus_per_cell=1, weights_dir=str(tmp_path)))
    final = next(r for r in report["cell_rows"] if r["final"])
    again = evaluate_weights(cell, digits, load_weights(str(tmp_path), cell.cell_key), ["test"], device="cuda")[0]
    assert again["accuracy"] == final["accuracy"] and again["loss"] == pytest.approx(final["loss"], rel=1e-3)


# ----- the command line ------------------------------------------------------------------------------

def test_command_line_trains_a_digits_cell_and_appends_rows(digits, tmp_path, capsys):
    cell = tiny_cell(digits)
    path = tmp_path / "cell.json"
    path.write_text(json.dumps(cell.to_dict()))
    out = tmp_path / "rows.jsonl"
    args = ["--cell", str(path), "--eval-sets", "test", "corrupted", "--device", "cpu", "--out", str(out)]
    assert main(args) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["step"], r["eval_set"], r["final"]) for r in rows] == [
        (4, "test", False), (4, "corrupted", False), (8, "test", True), (8, "corrupted", True)]
    assert rows[0]["cell_key"] == cell.cell_key  # the same key as the sweep's
    assert all(rows[0][k] == v for k, v in cell.to_dict().items())
    assert rows[0]["device"] == "cpu" and 0 <= rows[-1]["accuracy"] <= 1 and rows[0]["param_count"] > 0
    # the same cell from a JSON-lines file, by index: appended after the first run's rows
    lines = tmp_path / "cells.jsonl"
    other = dataclasses.replace(cell, seed=5)
    lines.write_text(json.dumps(other.to_dict()) + "\n" + json.dumps(cell.to_dict()) + "\n")
    assert read_cell(str(lines), 1) == cell and read_cell(json.dumps(cell.to_dict())) == cell
    assert main(["--cell", str(lines), "--cell-index", "1", "--device", "cpu", "--out", str(out)]) == 0
    again = [json.loads(line) for line in out.read_text().splitlines()][4:]
    assert [r["accuracy"] for r in again] == [r["accuracy"] for r in rows if r["eval_set"] == "test"]
    # a cell planned on other data is refused
    stale = tmp_path / "stale.json"
    stale.write_text(json.dumps(dataclasses.replace(cell, dataset_fingerprint="0" * 16).to_dict()))
    assert main(["--cell", str(stale), "--device", "cpu"]) == 2
    assert "fingerprint" in capsys.readouterr().err


def test_command_line_times_random_data_importing_only_torch_and_torchvision():
    # A fresh interpreter, as on a GPU box that has torch and torchvision but none of our other dependencies.
    # `python -m augworth.trainables.train_cli`, run as such, with what it loaded printed once it exits
    code = (
        "import atexit, runpy, sys; "
        "top = lambda m: '.'.join(m.split('.')[:2 if m.startswith('augworth.') else 1]); "  # augworth.<package>
        f"atexit.register(lambda: print('LOADED', sorted({{top(m) for m in sys.modules}} & "
        f"{set(NOT_FOR_THE_COMMAND_LINE)}))); "
        "sys.argv = ['augworth.trainables.train_cli', '--random-data', '3x16x16', '--steps', '4', "
        "'--warmup-steps', '2', '--pool', '64', '--width', '4', '--batch-size', '8', '--device', 'cpu', "
        "'--threads', '1']; "
        "runpy.run_module('augworth.trainables.train_cli', run_name='__main__')"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "steps/s" in proc.stdout and "60k steps would take" in proc.stdout
    assert "LOADED []" in proc.stdout, proc.stdout


def test_random_dataset_has_the_requested_shape():
    data = random_dataset((3, 8, 8), pool=20, n_test=5)
    assert data.train_x.shape == (20, 3, 8, 8) and data.test_x.shape == (5, 3, 8, 8)
    assert data.num_classes == 10


# ----- benchmark smoke run ---------------------------------------------------------------------------

def test_bench_train_step_smoke(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))  # bench/ is not installed
    from bench.train_step import main as bench_main

    threads, per_call = torch.get_num_threads(), train.AUGMENT_STEPS_PER_CALL
    results = bench_main(["--smoke"])
    out = capsys.readouterr().out
    assert set(results) == {"small_cnn", "resnet18"} and all(r["ratio"] > 0 for r in results.values())
    assert "ms/step" in out and "ratio" in out
    assert torch.get_num_threads() == threads  # the benchmark gives the settings back
    assert per_call == train.AUGMENT_STEPS_PER_CALL


def test_cpu_keeps_narrow_strided_1x1_convolutions_out_of_channels_last():
    # oneDNN's AVX2 channels_last kernel for these corrupts the heap (test_cpu_kernels.py trains through it)
    model = device.place_model(create_model("resnet18", width=4, in_channels=3, num_classes=10),
                              device_settings("cpu"))
    narrow = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1)
              and m.stride == (2, 2) and m.in_channels < device.CPU_MIN_CHANNELS_LAST_INPUTS]
    assert len(narrow) == 1  # stage 2's shortcut, 4 -> 8 channels
    seen = {}
    narrow[0].register_forward_hook(lambda m, args, out: seen.update(input=args[0], output=out))
    model(torch.rand(2, 3, 16, 16).contiguous(memory_format=torch.channels_last)).sum().backward()
    assert narrow[0].weight.stride() == (4, 1, 1, 1)  # NCHW strides, not the 1x1 kernel's ambiguous ones
    assert seen["input"].is_contiguous() and not seen["input"].is_contiguous(memory_format=torch.channels_last)
    stem = model[0]
    assert stem.weight.is_contiguous(memory_format=torch.channels_last)  # everything else stays channels_last
