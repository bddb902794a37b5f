"""Augmentation policies as batched tensor ops with a random draw per image.

A policy is one function registered in AUGMENTATIONS: `factory(strength, fill) -> Augment`. An Augment maps a
batch `x` (B, C, H, W), float in [0, 1], C = 1 or 3, on any device, and a torch.Generator on that device to an
augmented batch of the same shape, dtype and device. Every image gets its own draw (op, magnitude, offset,
mask ...); the draws for the whole batch come from the generator in one go and are applied as batched tensor
ops: no per-image Python loop, no PIL. So the same generator state gives the same batch, and a treatment's
draws never depend on how other code uses the global RNG.

Modules (timm's layout: this `__init__` imports the built-in policies, so no module imports its importer):
  core            the registry, the public API, checks, shared geometry (per-sample affine warps)
  simple          none, flip, crop, rotate, cutout
  trivialaugment  TrivialAugmentWide and the op kernels the policies below share
  auto_augment    RandAugment, AutoAugment, AugMix (torchvision's op spaces, batched)
  perspective     RandomPerspective
  composites      the paper's policy + crop(4) + flip chains
A new policy is one decorated function in a module imported here (or in a plugin, see execution.plugins).
"""

from __future__ import annotations

from . import auto_augment, composites, perspective, simple, trivialaugment  # noqa: F401  (they register)
from .core import (
    AUGMENTATIONS,
    OP_COVERS,
    SCALED_MAGNITUDES,
    Augment,
    Fill,
    augmentation_names,
    check_strength,
    covers,
    create_augmentation,
    default_strength,
)
from .trivialaugment import KERNEL_OPS, TA_OPS

__all__ = [
    "AUGMENTATIONS",
    "Augment",
    "Fill",
    "KERNEL_OPS",
    "OP_COVERS",
    "SCALED_MAGNITUDES",
    "TA_OPS",
    "augmentation_names",
    "check_strength",
    "covers",
    "create_augmentation",
    "default_strength",
]
