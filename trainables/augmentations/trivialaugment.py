"""TrivialAugmentWide, batched, and the op kernels that RandAugment, AutoAugment and AugMix share."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from ..lazy_torchvision import tf
from .core import (
    AUGMENTATIONS,
    SCALED_MAGNITUDES,
    Augment,
    Fill,
    inverse_affine_matrices,
    per_sample,
    warp,
)

# -----------------------------------------------------------------------------
# TrivialAugmentWide (Müller & Hutter 2021), batched
#
# Per image, as torchvision's TrivialAugmentWide.forward draws: one op uniformly from the op set, a magnitude
# bin uniformly from 31, and for signed ops a sign (negative with p = 0.5). Images are then grouped by op
# (all geometric ops form one group that shares one grid_sample) and each group gets its per-sample
# magnitudes. `strength` in (0, 1] scales the magnitudes: 1 is torchvision's ranges, towards 0 every op
# approaches identity.

TA_NUM_BINS = 31

# torchvision.transforms.v2.TrivialAugmentWide._AUGMENTATION_SPACE, copied (order included) so that a
# torchvision upgrade cannot silently change what a cell's treatment means; the tests check that it still
# equals torchvision's. op -> (magnitude bins as a function of (num_bins, height, width) or None, signed)
_TA_SPACE: dict[str, tuple[Callable[[int, int, int], torch.Tensor | None], bool]] = {
    "Identity": (lambda num_bins, height, width: None, False),
    "ShearX": (lambda num_bins, height, width: torch.linspace(0.0, 0.99, num_bins), True),
    "ShearY": (lambda num_bins, height, width: torch.linspace(0.0, 0.99, num_bins), True),
    "TranslateX": (lambda num_bins, height, width: torch.linspace(0.0, 32.0, num_bins), True),
    "TranslateY": (lambda num_bins, height, width: torch.linspace(0.0, 32.0, num_bins), True),
    "Rotate": (lambda num_bins, height, width: torch.linspace(0.0, 135.0, num_bins), True),
    "Brightness": (lambda num_bins, height, width: torch.linspace(0.0, 0.99, num_bins), True),
    "Color": (lambda num_bins, height, width: torch.linspace(0.0, 0.99, num_bins), True),
    "Contrast": (lambda num_bins, height, width: torch.linspace(0.0, 0.99, num_bins), True),
    "Sharpness": (lambda num_bins, height, width: torch.linspace(0.0, 0.99, num_bins), True),
    "Posterize": (
        lambda num_bins, height, width: (8 - (torch.arange(num_bins) / ((num_bins - 1) / 6))).round().int(),
        False,
    ),
    "Solarize": (lambda num_bins, height, width: torch.linspace(1.0, 0.0, num_bins), False),
    "AutoContrast": (lambda num_bins, height, width: None, False),
    "Equalize": (lambda num_bins, height, width: None, False),
}
TA_OPS: tuple[str, ...] = tuple(_TA_SPACE)
# Every op a kernel below implements: TrivialAugmentWide's (same indices), then AutoAugment's Invert. The
# policies in auto_augment.py draw from their own op spaces and hand these indices to the kernels.
KERNEL_OPS: tuple[str, ...] = (*TA_OPS, "Invert")
OP_INDEX = {name: i for i, name in enumerate(KERNEL_OPS)}


@functools.lru_cache(maxsize=16)
def ta_tables(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n_ops, 31) magnitude per op and bin (0 for ops without one), (n_ops,) signed flags; on the CPU."""
    rows = []
    for magnitudes_fn, _ in _TA_SPACE.values():
        bins = magnitudes_fn(TA_NUM_BINS, height, width)
        rows.append(torch.zeros(TA_NUM_BINS) if bins is None else bins.float())
    signed = torch.tensor([s for _, s in _TA_SPACE.values()])
    return torch.stack(rows), signed


@functools.lru_cache(maxsize=16)
def _ta_tables_on(height: int, width: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return tuple(t.to(device) for t in ta_tables(height, width))  # type: ignore[return-value]


def draw_trivialaugment(
    batch: int,
    height: int,
    width: int,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    strength: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image: op index, magnitude bin, and the signed magnitude scaled by strength; each (B,)."""
    table, signed = _ta_tables_on(height, width, torch.device(device))
    ops = torch.randint(len(TA_OPS), (batch,), generator=generator, device=device)
    bins = torch.randint(TA_NUM_BINS, (batch,), generator=generator, device=device)
    negate = torch.rand(batch, generator=generator, device=device) <= 0.5  # torchvision's `rand <= 0.5`
    magnitudes = table[ops, bins]
    magnitudes = torch.where(signed[ops] & negate, -magnitudes, magnitudes)
    return ops, bins, scale_magnitudes(ops, magnitudes, strength)


def scale_magnitudes(ops: torch.Tensor, magnitudes: torch.Tensor, strength: float) -> torch.Tensor:
    if strength == 1.0:
        return magnitudes
    # Posterize's magnitude is bits and Solarize's a threshold: identity is 8 bits and threshold 1, so scale
    # the distance from there. Bits stay whole numbers, as posterize needs.
    scaled = magnitudes * strength
    scaled = torch.where(ops == OP_INDEX["Posterize"], torch.round(8 - strength * (8 - magnitudes)), scaled)
    return torch.where(ops == OP_INDEX["Solarize"], 1 - strength * (1 - magnitudes), scaled)


# Group kernels: (images, their op indices, their magnitudes in torchvision's units) -> None, overwriting the
# images in place. The images are a slice of the batch's own sorted copy, so writing into them saves the
# kernel's output buffer and a copy back (fresh batch-sized memory costs page faults on CPU). Magnitudes are
# per sample; the colour factors are 1 + magnitude, as in torchvision's _apply_image_or_video_transform.


def _ta_identity(x: torch.Tensor, ops: torch.Tensor, m: torch.Tensor) -> None:
    return None


def ta_geometric(x: torch.Tensor, ops: torch.Tensor, m: torch.Tensor, mode: str = "nearest") -> None:
    """ShearX/Y, TranslateX/Y and Rotate with per-sample matrices, 0 outside; `mode`: nearest (TrivialAugment,
    RandAugment, AutoAugment) or bilinear (AugMix)."""
    _, _, h, w = x.shape
    zero = torch.zeros_like(m)
    shear = torch.rad2deg(torch.atan(m))  # torchvision: shear angle atan(magnitude), see its AutoAugment note
    shear_x = torch.where(ops == OP_INDEX["ShearX"], shear, zero)
    shear_y = torch.where(ops == OP_INDEX["ShearY"], shear, zero)
    translate_x = torch.where(ops == OP_INDEX["TranslateX"], m.trunc(), zero)  # torchvision: int(magnitude) pixels
    translate_y = torch.where(ops == OP_INDEX["TranslateY"], m.trunc(), zero)
    angle = torch.where(ops == OP_INDEX["Rotate"], -m, zero)  # F.rotate hands -angle to the affine matrix
    # shears are about the top-left corner (torchvision passes center=[0, 0]); rotation about the centre
    is_shear = (ops == OP_INDEX["ShearX"]) | (ops == OP_INDEX["ShearY"])
    center_x = torch.where(is_shear, -w / 2, zero)
    center_y = torch.where(is_shear, -h / 2, zero)
    inverse = inverse_affine_matrices(angle, shear_x, shear_y, translate_x, translate_y, center_x, center_y)
    x.copy_(warp(x, inverse, mode=mode))


def _blend_(x: torch.Tensor, degenerate: torch.Tensor, factor: torch.Tensor) -> None:
    # torchvision's _blend with a per-sample ratio, in place: factor 1 is the image, 0 the degenerate image
    f = per_sample(factor).to(x.dtype)
    x.mul_(f).add_(degenerate * (1 - f)).clamp_(0, 1)


def _grayscale(x: torch.Tensor) -> torch.Tensor:
    return tf().rgb_to_grayscale(x) if x.shape[1] == 3 else x  # (B, 1, H, W)


def _ta_brightness(x: torch.Tensor, ops: torch.Tensor, m: torch.Tensor) -> None:
    x.mul_(per_sample(1 + m).to(x.dtype)).clamp_(0, 1)  # a blend with black


def _ta_color(x: torch.Tensor, ops: torch.Tensor, m: torch.Tensor) -> None:
    if x.shape[1] == 3:  # saturation of a grayscale image is itself (torchvision and PIL agree)
        _blend_(x, _grayscale(x), 1 + m)


def _ta_contrast(x: torch.Tensor, ops: torch.Tensor, m: torch.Tensor) -> None:
    mean = _grayscale(x).mean(dim=(-3, -2, -1), keepdim=True)  # (B, 1, 1, 1)
    _blend_(x, mean, 1 + m)


def _ta_sharpness(x: torch.Tensor, ops: torch.Tensor, m: torch.Tensor) -> None:
    _, _, h, w = x.shape
    if h <= 2 or w <= 2:
        return
    # torchvision's adjust_sharpness: blend with a 3x3 smoothed copy (1s around a 5, / 13); the border
    # pixels, where the kernel does not fit, stay as they are. The 3x3 sum is taken from shifted slices
    # rather than conv2d: the group's size changes every batch, and oneDNN builds a new conv for each size.
    rows = x[..., :-2, :] + x[..., 1:-1, :] + x[..., 2:, :]  # (B, C, H-2, W)
    box = rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:]  # (B, C, H-2, W-2)
    smoothed = x.clone()
    smoothed[..., 1:-1, 1:-1] = (box + 4 * x[..., 1:-1, 1:-1]) / 13
    _blend_(x, smoothed, 1 + m)


def _ta_posterize(x: torch.Tensor, ops: torch.Tensor, m: torch.Tensor) -> None:
    # torchvision's float posterize: floor(x * 2^bits) / 2^bits, with per-sample bits
    levels = per_sample(torch.exp2(m)).to(x.dtype)
    torch.minimum(x.mul_(levels).floor_(), levels - 1, out=x).div_(levels)


def _ta_solarize(x: torch.Tensor, ops: torch.Tensor, m: torch.Tensor) -> None:
    # torchvision: where(x >= threshold, 1 - x, x), the threshold a fraction of 1.0. Written as |x - 1| for
    # the inverted pixels and |x - 0| for the rest, which is twice as fast on CPU as torch.where.
    inverted = (x >= per_sample(m).to(x.dtype)).to(x.dtype)
    x.sub_(inverted).abs_()


def _ta_autocontrast(x: torch.Tensor, ops: torch.Tensor, m: torch.Tensor) -> None:
    x.copy_(tf().autocontrast(x))  # already per image and channel


def _ta_equalize(x: torch.Tensor, ops: torch.Tensor, m: torch.Tensor) -> None:
    x.copy_(tf().equalize(x))  # per image; quantises a float batch to uint8 for the histogram and back


def _ta_invert(x: torch.Tensor, ops: torch.Tensor, m: torch.Tensor) -> None:
    x.neg_().add_(1)  # torchvision's float invert: 1 - x


_TaKernel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None]
_TA_GROUPS: tuple[tuple[tuple[str, ...], _TaKernel], ...] = (
    (("Identity",), _ta_identity),
    (("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"), ta_geometric),
    (("Brightness",), _ta_brightness),
    (("Color",), _ta_color),
    (("Contrast",), _ta_contrast),
    (("Sharpness",), _ta_sharpness),
    (("Posterize",), _ta_posterize),
    (("Solarize",), _ta_solarize),
    (("AutoContrast",), _ta_autocontrast),
    (("Equalize",), _ta_equalize),
    (("Invert",), _ta_invert),
)
_GROUP_OF_OP = torch.tensor(
    [next(g for g, (names, _) in enumerate(_TA_GROUPS) if name in names) for name in KERNEL_OPS]
)


@functools.lru_cache(maxsize=8)
def _group_of_op(device: torch.device) -> torch.Tensor:
    return _GROUP_OF_OP.to(device)


def apply_kernel_ops(
    x: torch.Tensor, ops: torch.Tensor, magnitudes: torch.Tensor, interpolation: str = "nearest"
) -> torch.Tensor:
    """Apply op KERNEL_OPS[ops[b]] at magnitudes[b] (torchvision's units, already signed and scaled) to image b;
    `interpolation` is the geometric ops' resampling (nearest or bilinear)."""
    group = _group_of_op(x.device)[ops]
    order = torch.argsort(group)  # image indices, grouped
    counts = torch.bincount(group, minlength=len(_TA_GROUPS)).tolist()  # the one CPU-GPU sync per batch
    # Sort a copy of the batch by group, let each group's kernel overwrite its slice, unsort. Both moves are
    # index_select, which copies whole images (x[order] and index_copy_ are 2-3x slower on CPU).
    images, op_ids, mags = x.index_select(0, order), ops[order], magnitudes[order]
    for (_, kernel), xg, og, mg in zip(
        _TA_GROUPS, images.split(counts), op_ids.split(counts), mags.split(counts), strict=True
    ):
        if len(xg) and kernel is ta_geometric:
            ta_geometric(xg, og, mg, mode=interpolation)
        elif len(xg) and kernel is not _ta_identity:
            kernel(xg, og, mg)
    return images.index_select(0, torch.argsort(order))


def apply_kernel_op(
    x: torch.Tensor, op: str, magnitudes: torch.Tensor | float, interpolation: str = "nearest"
) -> torch.Tensor:
    """Apply kernel op `op` to every image of `x` at per-sample `magnitudes` (tests pin op and m)."""
    ops = torch.full((x.shape[0],), OP_INDEX[op], device=x.device)
    m = torch.as_tensor(magnitudes, dtype=torch.float32, device=x.device).expand(x.shape[0])
    return apply_kernel_ops(x, ops, m, interpolation)


@AUGMENTATIONS.register(
    "trivialaugment",
    **SCALED_MAGNITUDES,
    ops=TA_OPS,
    doc="TrivialAugmentWide, one op per image; strength in (0, 1] scales its magnitudes (1 = torchvision's)",
)
def trivialaugment(strength: float | None, fill: Fill) -> Augment:
    scale = 1.0 if strength is None else float(strength)

    def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, _, h, w = x.shape
        ops, _, magnitudes = draw_trivialaugment(b, h, w, generator, x.device, scale)
        return apply_kernel_ops(x, ops, magnitudes)

    return augment
