"""A plugin as a user writes one: components registered from outside augworth (execution.plugins).

The three augmentations fail on purpose, each in its own way, so the tests can watch real failures travel
through a sweep; the data set and eval set at the end take any options.
"""

from __future__ import annotations

import time

import torch

from augworth.trainables.augmentations import AUGMENTATIONS
from augworth.trainables.datasets import DATASETS, EVAL_SETS, load_dataset


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


# A data set and an eval set that take any options, as a user's components may: the spec round trips
# (tests/test_frozen.py) put every kind of option value through the plan's comparison of a sweep with itself.
@DATASETS.register("digits_any_options", image_size=16, doc="the digits, whatever options it is given")
def digits_any_options(root=None, download=False, **options):
    return load_dataset("digits")


@EVAL_SETS.register("any_options", doc="the test split, whatever options it is given")
def any_options(data, root=None, **options):
    return data.test_x, data.test_y
