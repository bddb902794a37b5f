"""A plugin as a user writes one: augmentations registered from outside augworth (execution.plugins).

These three fail on purpose, each in its own way, so the tests can watch real failures travel through a sweep.
"""

from __future__ import annotations

import time

import torch

from trainables.augmentations import AUGMENTATIONS


@AUGMENTATIONS.register("boom", default_strength=1.0, strength_range=(0.0, 1.0), doc="raises when strength > 0")
def boom(strength, fill):
    def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if strength > 0:
            raise RuntimeError("boom: this augmentation always raises")
        return x

    return augment


@AUGMENTATIONS.register("poison", default_strength=1.0, strength_range=(0.0, 1.0), doc="NaN images when > 0")
def poison(strength, fill):
    def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return torch.full_like(x, float("nan")) if strength > 0 else x

    return augment


@AUGMENTATIONS.register("slow", default_strength=0.0, strength_range=(0.0, 60.0), doc="sleeps `strength` s a call")
def slow(strength, fill):
    def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        time.sleep(strength)  # a workload that is too slow, for execution.timeout_s
        return x

    return augment
