"""CPUs differ: training must never reach a kernel that corrupts the heap on the CPU it runs on.

oneDNN's AVX2 kernel for the backward pass of a channels_last 1x1 stride-2 convolution with fewer than 8
input channels (ResNet-18's shortcut at width <= 6) corrupts the heap in torch 2.14.1 (trainables/device.py,
CPU_MIN_CHANNELS_LAST_INPUTS). AVX-512 machines pick the AVX2 kernels under ONEDNN_MAX_CPU_ISA=AVX2, so on them
each check runs twice: with the machine's own kernels and with AVX2's (on an AVX2-only CPU those are one
set, run once). The training runs in fresh interpreters,
so a crash fails a test and never takes pytest down; glibc's malloc checking, where the machine has it,
turns a corruption that would not crash by itself into an abort.
"""

from __future__ import annotations

import ctypes.util
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def has_avx512() -> bool:
    """Whether this CPU has AVX-512 (True where that cannot be read: then both kernel sets run)."""
    try:
        return " avx512f" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return True


# The machine's own kernels, and AVX2's where they are other kernels: on an AVX2-only CPU the machine's kernels
# are AVX2's, and the same trainings would run twice.
ISA_ENV = {"machine": {}, "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2"}}
ISAS = ["machine", "avx2"] if has_avx512() else ["machine"]
THREADS = (1, 2)
SHAPES = ("1x16x16", "3x16x16", "3x32x32")


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_MAX_CPU_ISA", "PYTHONPATH")}
    env |= extra | {"PYTHONPATH": str(ROOT), "MALLOC_CHECK_": "3"}  # MALLOC_CHECK_: glibc before 2.34
    debug = ctypes.util.find_library("c_malloc_debug")  # glibc 2.34 on: checking lives in its own library
    if debug:
        env["LD_PRELOAD"] = " ".join(filter(None, [env.get("LD_PRELOAD"), debug]))
        env["GLIBC_TUNABLES"] = ":".join(filter(None, [env.get("GLIBC_TUNABLES"), "glibc.malloc.check=3"]))
    return env


def run(args: list[str], isa: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([sys.executable, *args], cwd=ROOT, env=child_env(ISA_ENV[isa]), capture_output=True,
                              text=True, timeout=300)
    except subprocess.TimeoutExpired as exc:  # a corrupted heap can also hang: that fails too
        return subprocess.CompletedProcess(exc.cmd, -9, exc.stdout or "", f"timed out after {exc.timeout} s")


@pytest.fixture(scope="module")
def trainings():
    """Every model x width x shape, per (ISA, threads): up to four interpreters, two at a time (default
    widths on one thread only)."""
    settings = [(isa, threads) for isa in ISAS for threads in THREADS]
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = pool.map(lambda s: run([str(ROOT / "tests" / "kernel_child.py"), "--threads", str(s[1])], s[0]),
                        settings)
        return dict(zip(settings, done, strict=True))


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("isa", ISAS)
def test_every_model_width_and_shape_trains_with_a_finite_loss(trainings, isa, threads):
    result = trainings[isa, threads]
    crash = f"exit {result.returncode}; last lines:\n{result.stdout[-600:]}\n{result.stderr[-1500:]}"
    assert result.returncode == 0, crash
    lines = result.stdout.splitlines()
    # 4 models x (widths 2-8, and the default on one thread) x 3 shapes, each with a finite loss, then the count
    trained = 4 * (7 + (threads == 1)) * 3
    assert lines[-1] == f"DONE {trained}" and sum(": loss " in line for line in lines) == trained, \
        result.stdout[-600:]
    assert not any("nan" in line or "inf" in line for line in lines), result.stdout


@pytest.mark.parametrize("shape", SHAPES)
def test_the_timing_command_line_trains_resnet18_at_width_4_on_avx2_kernels(shape):
    result = run(["-m", "augworth.trainables.train_cli", "--random-data", shape, "--model", "resnet18", "--width", "4",
                  "--device", "cpu", "--threads", "1", "--steps", "6", "--warmup-steps", "2", "--pool", "64",
                  "--batch-size", "8", "--augmentation", "crop+flip"], "avx2")
    assert result.returncode == 0, f"exit {result.returncode}:\n{result.stderr[-1500:]}"
    assert "steps/s" in result.stdout
