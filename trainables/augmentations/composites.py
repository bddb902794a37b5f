"""The paper's composites: a policy, then RandomCrop(32, 4), then RandomHorizontalFlip.

Geiping et al. (ICLR 2023) compare flip, crop + flip, TrivialAugment + crop + flip, RandAugment + crop + flip,
cutout, perspective and cutout + crop + flip. Composites run their parts in the order of the paper's code
(JonasGeiping/dataaugs, fig2_all_augmentations.sh), each part drawing from the same generator in turn:
`trivialaugment_crop_flip(x, g)` is `flip(crop(trivialaugment(x, g), g), g)`.
"""

from __future__ import annotations

import torch

from .auto_augment import RA_META, RA_OPS, randaugment
from .core import AUGMENTATIONS, SCALED_MAGNITUDES, Augment, Fill, identity
from .simple import CROP_OPS, CUTOUT_OPS, FLIP_OPS, crop, cutout, flip
from .trivialaugment import TA_OPS, trivialaugment

CROP_PADDING = 4  # RandomCrop(32, padding=4) in every composite


def chain(*parts: Augment) -> Augment:
    """Apply `parts` left to right, each drawing from the generator in turn."""
    parts = tuple(p for p in parts if p is not identity)

    def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for part in parts:
            x = part(x, generator)
        return x

    return augment


CROP_FLIP_OPS = (*CROP_OPS, *FLIP_OPS)  # what crop_flip_parts applies


def crop_flip_parts(fill: Fill) -> tuple[Augment, Augment]:
    return crop(float(CROP_PADDING), fill), flip(None, fill)


# -----------------------------------------------------------------------------
# Composites


@AUGMENTATIONS.register(
    "crop_flip",
    ops=CROP_FLIP_OPS,
    default_strength=4.0,
    strength_range=(0.0, float("inf")),
    strength_integer=True,
    doc="RandomCrop(H, padding=`strength`) then horizontal flip (p = 0.5)",
)
def crop_flip(strength: float | None, fill: Fill) -> Augment:
    return chain(crop(strength, fill), flip(None, fill))


@AUGMENTATIONS.register(
    "trivialaugment_crop_flip",
    **SCALED_MAGNITUDES,
    ops=(*TA_OPS, *CROP_FLIP_OPS),
    doc="TrivialAugmentWide (`strength` in (0, 1] scales its magnitudes), then crop(4), then flip",
)
def trivialaugment_crop_flip(strength: float | None, fill: Fill) -> Augment:
    return chain(trivialaugment(strength, fill), *crop_flip_parts(fill))


@AUGMENTATIONS.register(
    "cutout_crop_flip",
    ops=(*CUTOUT_OPS, *CROP_FLIP_OPS),
    default_strength=lambda image_size: image_size // 2,
    strength_range=(0.0, float("inf")),
    strength_integer=True,
    doc="cutout of side `strength` (default H // 2, filled with the mean), then crop(4), then flip",
)
def cutout_crop_flip(strength: float | None, fill: Fill) -> Augment:
    return chain(cutout(strength, fill), *crop_flip_parts(fill))


@AUGMENTATIONS.register(
    "randaugment_crop_flip",
    **RA_META,
    ops=(*RA_OPS, *CROP_FLIP_OPS),
    doc="RandAugment(num_ops=2, magnitude=`strength` in 0..30, 31 bins), then crop(4), then flip",
)
def randaugment_crop_flip(strength: float | None, fill: Fill) -> Augment:
    return chain(randaugment(strength, fill), *crop_flip_parts(fill))
