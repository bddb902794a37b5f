"""Where a cell trains: the device, its memory layout and precision, and the CPU guards that keep oneDNN off a
kernel that corrupts the heap.

`place_model` puts a model on the device in channels_last, except, on CPU, strided 1x1 convolutions with
fewer than CPU_MIN_CHANNELS_LAST_INPUTS input channels (see there). `keep_freed_memory` keeps glibc from
returning batch-sized buffers to the OS between steps.
"""

from __future__ import annotations

import contextlib
import ctypes
import sys
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

Tensor = torch.Tensor

# Model and batches in channels_last (NHWC) on every device: on one CPU thread a step takes 0.79x the time
# of NCHW's for small_cnn on digits (batch 64) and 0.80x for resnet18 width 16 at 32x32 (batch 128) on an
# AVX-512 CPU, 0.74x and 0.80x on an AVX2 one (python -m bench.train_step --layout); on GPUs it is what
# tensor-core convolutions want.
CHANNELS_LAST = True
# ... except, on CPU, a strided 1x1 convolution with fewer input channels than this runs NCHW. oneDNN's AVX2
# kernel for the backward pass of a channels_last 1x1 stride-2 convolution with 1-7 input channels (ResNet's
# shortcut at width <= 6) writes past its buffer and corrupts the heap (torch 2.14.1, on AVX2 CPUs or under
# ONEDNN_MAX_CPU_ISA=AVX2; 1 and 2 threads). No other shape was seen to corrupt it, under glibc's malloc
# checking: kernels 1/3/5/7, strides 1/2, 1-16 input and 2-16 output channels, depthwise 7x7; tests/
# test_cpu_kernels.py trains every model at widths 2-8 on both ISAs. So the stems stay channels_last: all
# convolutions with < 8 inputs in NCHW made small_cnn's step on digits 1.34x slower. 0 turns the guard off
# (benchmarks only: python -m bench.train_step --narrow-nchw).
CPU_MIN_CHANNELS_LAST_INPUTS = 8



@dataclass(frozen=True)
class DeviceSettings:
    device: torch.device
    memory_format: torch.memory_format  # of the model's weights and of every batch
    autocast_dtype: torch.dtype | None  # forward and loss under autocast to this dtype; None: fp32
    check_every: int  # steps between NaN checks; each `.item()` is a host sync on an accelerator


def device_settings(device: str | torch.device, *, deterministic: bool = False) -> DeviceSettings:
    """`deterministic`: on CUDA, deterministic kernels and no cuDNN autotuning (slower; the CPU path always is)."""
    device = torch.device(device)
    memory_format = torch.channels_last if CHANNELS_LAST else torch.contiguous_format
    if device.type == "cpu":
        # fp32, so CPU cells stay comparable with the ones already run. bf16 autocast would be faster on CPUs
        # with AVX512-BF16 (this VM's: 0.61x the step time for resnet18 width 16, 0.94x for small_cnn).
        return DeviceSettings(device, memory_format, None, check_every=1)
    if deterministic:
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)  # warn where an op has no deterministic kernel
    else:  # process-wide settings: a reused worker may have run a deterministic cell before
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
        torch.backends.cudnn.benchmark = True  # fixed shapes: time the conv algorithms once, keep the fastest
    return DeviceSettings(device, memory_format, torch.bfloat16, check_every=50)


def _nchw_input(conv: nn.Module, args: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    # .contiguous() hands back a 1-channel NHWC batch as it is (it counts as contiguous already), and oneDNN
    # would still read its strides as NHWC: clone those (a 1-channel batch is small)
    x = args[0]
    x = x.clone(memory_format=torch.contiguous_format) if x.shape[1] == 1 else x.contiguous()
    return (x, *args[1:])


def place_model(model: nn.Module, settings: DeviceSettings) -> nn.Module:
    """The model on its device in the settings' memory format, but on CPU the narrow strided 1x1 convolutions
    (CPU_MIN_CHANNELS_LAST_INPUTS) in NCHW: their weights, and a hook that hands them NCHW inputs."""
    model = model.to(settings.device, memory_format=settings.memory_format)  # type: ignore[call-overload]  # torch's stubs lack this overload
    if settings.device.type != "cpu" or settings.memory_format != torch.channels_last:
        return model
    for conv in model.modules():
        if (isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1) and conv.stride != (1, 1)
                and conv.in_channels < CPU_MIN_CHANNELS_LAST_INPUTS):
            # a 1x1 kernel's (out, in, 1, 1) weight is both layouts at once: clone to NCHW strides outright
            conv.weight.data = conv.weight.data.clone(memory_format=torch.contiguous_format)
            conv.register_forward_pre_hook(_nchw_input)
    return model


_FREED_MEMORY_KEPT = False


def keep_freed_memory() -> None:
    """Have glibc keep freed memory for reuse rather than hand it back to the OS (once per process).

    A training step frees its activations and allocates them again on the next step; by default glibc returns
    freed blocks at the top of the heap to the OS whenever more than twice its (adaptive) mmap threshold is
    free, and the next step page-faults them in again: 300-800 faults per small_cnn step on digits, ~25% of
    its time on one thread, ~2,000 per resnet18 (width 16) step. With a fixed 32 MiB mmap threshold (the
    largest glibc accepts by its documentation) and 256 MiB of free heap kept, steps stop faulting. Costs
    resident memory that the process would have given back. A no-op where libc is not glibc.
    """
    global _FREED_MEMORY_KEPT
    if _FREED_MEMORY_KEPT or not sys.platform.startswith("linux"):
        return
    _FREED_MEMORY_KEPT = True
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-1, 256 * 2**20)  # M_TRIM_THRESHOLD
        libc.mallopt(-3, 32 * 2**20)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # musl and others: no mallopt
        pass


def autocast_for(settings: DeviceSettings, *, cache: bool = True) -> contextlib.AbstractContextManager[Any]:
    """`cache=False`: no cached low-precision copies of the weights (a CUDA graph would capture them stale)."""
    if settings.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(settings.device.type, dtype=settings.autocast_dtype, cache_enabled=None if cache else False)
