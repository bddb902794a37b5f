"""Augmentation policies as batched tensor ops with a random draw per image.

A policy is one function registered in AUGMENTATIONS: `factory(strength, fill) -> Augment`. An Augment maps a
batch `x` (B, C, H, W), float in [0, 1], C = 1 or 3, on any device, and a torch.Generator on that device to an
augmented batch of the same shape, dtype and device. Every image gets its own draw (op, magnitude, offset,
mask ...); the draws for the whole batch come from the generator in one go and are applied as batched tensor
ops: no per-image Python loop, no PIL. So the same generator state gives the same batch, and a treatment's
draws never depend on how other code uses the global RNG.

Sections: registry and public API, shared geometry, simple policies (none, flip, crop, rotate, cutout),
TrivialAugmentWide and the op kernels it shares with the policies in trainables.policies (the paper's
composites, RandAugment, AutoAugment, AugMix, perspective), which this module imports at its end.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from numbers import Real

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from .registry import Registry

__all__ = [
    "AUGMENTATIONS",
    "Augment",
    "KERNEL_OPS",
    "TA_OPS",
    "augmentation_names",
    "check_strength",
    "create_augmentation",
    "default_strength",
]

# -----------------------------------------------------------------------------
# Registry and public API

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
Fill = tuple[float, ...]
# factory(strength, fill) -> Augment; strength is already checked and resolved (None only where the policy
# takes none), fill is the per-channel data-set mean as a tuple.
PolicyFactory = Callable[[float | None, Fill], Augment]

# Metadata each policy registers:
#   default_strength: float | None, or a function of the image side (H) giving a float
#   strength_range:   (lo, hi) inclusive, or None for a policy that takes no strength
#   strength_open_low: True where lo itself is not allowed (trivialaugment: (0, 1])
#   strength_integer: True where the strength must be a whole number (pixels, magnitude bins, severity)
#   doc:              one line for `augworth presets` and error messages
AUGMENTATIONS: Registry[PolicyFactory] = Registry(
    "augmentation", meta=("default_strength", "strength_range", "strength_integer", "strength_open_low"))


def augmentation_names() -> list[str]:
    return AUGMENTATIONS.names()


def default_strength(name: str, image_size: int) -> float | None:
    """The strength a policy uses when none is given, for images of side `image_size` (H)."""
    default = AUGMENTATIONS.get(name).meta.get("default_strength")
    if callable(default):
        return float(default(image_size))
    return None if default is None else float(default)


def check_strength(name: str, strength: float | None) -> None:
    """Raise ValueError unless `strength` is valid for policy `name` (None, the default, always is)."""
    meta = AUGMENTATIONS.get(name).meta
    if strength is None:
        return
    bounds = meta.get("strength_range")
    if bounds is None:
        raise ValueError(f"augmentation {name!r} takes no strength, got {strength!r}")
    lo, hi = bounds
    open_low = meta.get("strength_open_low", False)
    interval = f"{'(' if open_low else '['}{lo:g}, {hi:g}]"
    if isinstance(strength, bool) or not isinstance(strength, Real) or not math.isfinite(strength):
        raise ValueError(f"strength for {name!r} must be a finite number in {interval}, got {strength!r}")
    if strength < lo or strength > hi or (open_low and strength == lo):
        raise ValueError(f"strength for {name!r} must be in {interval}, got {strength!r}")
    if meta.get("strength_integer", False) and not float(strength).is_integer():
        raise ValueError(f"strength for {name!r} must be a whole number, got {strength!r}")


def create_augmentation(
    name: str, strength: float | None = None, *, fill: float | Sequence[float] = 0.0
) -> Augment:
    """The policy `name` at `strength` (None: the policy's default) as a function (x, generator) -> x_aug.

    `fill` is the per-channel data-set mean (one value, or one per channel); cutout paints it. Raises
    UnknownNameError for an unknown name and ValueError for a strength or fill out of range.
    """
    entry = AUGMENTATIONS.get(name)  # unknown name: UnknownNameError listing the valid ones
    check_strength(name, strength)
    fill_values = _check_fill(fill)
    default = entry.meta.get("default_strength")
    if strength is None and callable(default):
        augment = _sized_default(entry.factory, default, fill_values)
    else:
        resolved = default if strength is None else strength
        augment = entry.factory(None if resolved is None else float(resolved), fill_values)

    def checked(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        _check_batch(x)
        return augment(x, generator)

    return checked


def _sized_default(factory: PolicyFactory, default: Callable[[int], float], fill: Fill) -> Augment:
    # The default depends on the image side, which is known only when a batch arrives.
    by_size: dict[int, Augment] = {}

    def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        size = x.shape[-2]
        if size not in by_size:
            by_size[size] = factory(float(default(size)), fill)
        return by_size[size](x, generator)

    return augment


def _check_fill(fill: float | Sequence[float]) -> Fill:
    if isinstance(fill, torch.Tensor):
        fill = fill.tolist()
    values = (float(fill),) if isinstance(fill, Real) else tuple(float(v) for v in fill)
    if not all(0.0 <= v <= 1.0 for v in values):
        raise ValueError(f"fill must lie in [0, 1] (a data-set mean of images in [0, 1]), got {values}")
    return values


def _check_batch(x: torch.Tensor) -> None:
    if x.ndim != 4 or x.shape[1] not in (1, 3) or not x.is_floating_point():
        raise ValueError(
            f"augmentations take a float batch (B, C, H, W) with C = 1 or 3 and values in [0, 1], "
            f"got {x.dtype} {tuple(x.shape)}"
        )


def _per_sample(v: torch.Tensor) -> torch.Tensor:
    return v.view(-1, 1, 1, 1)  # (B,) -> (B, 1, 1, 1), broadcasts over (C, H, W)


def _identity(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return x


# -----------------------------------------------------------------------------
# Shared geometry: per-sample affine maps through one grid_sample call


def _inverse_affine_matrices(
    angle: torch.Tensor,
    shear_x: torch.Tensor,
    shear_y: torch.Tensor,
    translate_x: torch.Tensor,
    translate_y: torch.Tensor,
    center_x: torch.Tensor,
    center_y: torch.Tensor,
) -> torch.Tensor:
    """torchvision's `_get_inverse_affine_matrix` (scale 1) for a batch: (B,) each -> (B, 2, 3).

    Angles and shears in degrees, translations in pixels, centres in pixel coordinates measured from the image
    centre. The result maps output pixels to input pixels (what grid_sample needs). Written out term by term
    as torchvision does, so the conventions (signs, shear about the centre given) are the same.
    """
    rot, sx, sy = torch.deg2rad(angle), torch.deg2rad(shear_x), torch.deg2rad(shear_y)
    cos_sy, tan_sx = torch.cos(sy), torch.tan(sx)
    a = torch.cos(rot - sy) / cos_sy
    b = -(a * tan_sx + torch.sin(rot))
    c = torch.sin(rot - sy) / cos_sy
    d = torch.cos(rot) - c * tan_sx
    # inverse of the rotate-shear part (its determinant is 1), then the translations around the centre
    m0, m1, m3, m4 = d, -b, -c, a
    cx_t, cy_t = center_x + translate_x, center_y + translate_y
    m2 = center_x - m0 * cx_t - m1 * cy_t
    m5 = center_y - m3 * cx_t - m4 * cy_t
    return torch.stack([m0, m1, m2, m3, m4, m5], dim=-1).view(-1, 2, 3)


def _warp(x: torch.Tensor, inverse: torch.Tensor, mode: str) -> torch.Tensor:
    """Resample image b through its own map inverse[b] (B, 2, 3); pixels from outside the image are 0.

    The grid is built as torchvision's `_affine_grid` builds it (pixel centres measured from the image centre,
    normalised after the matrix product, align_corners=False) rather than with F.affine_grid, so that nearest
    interpolation picks the same source pixels as torchvision.
    """
    b, _, h, w = x.shape
    xs = torch.linspace((1 - w) / 2, (w - 1) / 2, w, device=x.device, dtype=x.dtype)
    ys = torch.linspace((1 - h) / 2, (h - 1) / 2, h, device=x.device, dtype=x.dtype)
    # source pixels, scaled to grid_sample's [-1, 1]: theta[b] @ (x, y, 1) for every output pixel, as the
    # sum of an x term (B, 2, 1, W) and a y term (B, 2, H, 1), then stacked into the contiguous (B, H, W, 2)
    # layout grid_sample is fast on. A matmul against a base grid costs 2x more on CPU (its inner dimension
    # is 3, and its output needs a transposing copy), and writing the sum straight into the interleaved
    # layout 3x more.
    theta = inverse.to(x.dtype, copy=True)  # (B, 2, 3); scalars rather than a tensor: no host-to-GPU copy
    theta[:, 0].div_(w / 2)
    theta[:, 1].div_(h / 2)
    x_term = theta[:, :, 0, None, None] * xs  # (B, 2, 1, W)
    y_term = torch.addcmul(theta[:, :, 2, None, None], theta[:, :, 1, None, None], ys[:, None])  # (B,2,H,1)
    source = y_term + x_term  # (B, 2, H, W)
    grid = torch.stack([source[:, 0], source[:, 1]], dim=-1)  # (B, H, W, 2)
    return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)


# -----------------------------------------------------------------------------
# Simple policies


@AUGMENTATIONS.register("none", default_strength=None, strength_range=None, doc="identity (the baseline)")
def none(strength: float | None, fill: Fill) -> Augment:
    return _identity


# flip's default stays None (not 0.5): a cell's key hashes the resolved strength, and flip's cells predate its
# strength. None and 0.5 flip alike.
@AUGMENTATIONS.register(
    "flip",
    default_strength=None,
    strength_range=(0.0, 1.0),
    doc="horizontal flip with probability `strength` per image (default None: p = 0.5)",
)
def flip(strength: float | None, fill: Fill) -> Augment:
    p = 0.5 if strength is None else float(strength)
    if p == 0.0:
        return _identity

    def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, _, _, w = x.shape
        flipped = torch.rand(b, generator=generator, device=x.device) < p
        # per image, columns in reverse or in order; one gather, rather than torch.where over a flipped
        # copy of the whole batch (one full-size temporary less)
        cols = torch.arange(w, device=x.device)
        cols = torch.where(flipped[:, None], cols.flip(0), cols)  # (B, W)
        return x.gather(3, cols[:, None, None, :].expand_as(x))

    return augment


@AUGMENTATIONS.register(
    "crop",
    default_strength=4.0,
    strength_range=(0.0, math.inf),
    strength_integer=True,
    doc="random crop back to size after zero padding of `strength` pixels (RandomCrop(H, padding))",
)
def crop(strength: float | None, fill: Fill) -> Augment:
    pad = int(strength or 0)
    if pad == 0:
        return _identity

    def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b = x.shape[0]
        # the window's offset in the zero-padded image, 0..2p on each axis (RandomCrop's draw), as a shift
        dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=x.device) - pad
        dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=x.device) - pad
        return _shift(x, dy, dx, pad)

    return augment


def _shift(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, pad: int) -> torch.Tensor:
    """out[b, :, i, j] = x[b, :, i + dy[b], j + dx[b]], 0 where that is outside the image; |dy|, |dx| <= pad.

    Image b's output is the (C, H, W) window of x's storage that starts at element b*C*H*W + dy*W + dx. A view
    with one entry per storage offset holds every such window (they overlap; nothing is copied), so all
    shifts are one index_select: copies of whole rows, 2-4x faster than a gather with an index per pixel or a
    loop over the shifts. Pixels from outside the image read a neighbouring row, channel or image and are
    zeroed after: no zero-padded copy of the batch, which costs as much again as the crop itself. Only the
    first and last k images can reach past the storage; they are redone from a padded copy of their own.
    """
    x = x.contiguous()
    b, c, h, w = x.shape
    k = -(-(pad * w + pad) // (c * h * w))  # images at each end whose window may leave the storage
    if 2 * k >= b:
        return _shift_padded(x, dy, dx, pad)
    n_offsets = x.numel() - c * h * w + 1
    windows = x.as_strided((n_offsets, c, h, w), (1, h * w, w, 1))
    starts = torch.arange(b, device=x.device) * (c * h * w) + dy * w + dx
    out = windows.index_select(0, starts.clamp_(0, n_offsets - 1))
    rows = torch.arange(h, device=x.device) + dy[:, None]  # (B, H) source rows
    cols = torch.arange(w, device=x.device) + dx[:, None]  # (B, W) source columns
    # a 0/1 multiply: 3x faster on CPU than masked_fill_ with a broadcast (B, 1, H, W) boolean mask
    keep_rows = ((rows >= 0) & (rows < h)).to(x.dtype)
    keep_cols = ((cols >= 0) & (cols < w)).to(x.dtype)
    out.mul_((keep_rows[:, :, None] * keep_cols[:, None, :])[:, None])  # (B, 1, H, W) over the channels
    ends = torch.cat([torch.arange(k, device=x.device), torch.arange(b - k, b, device=x.device)])
    fixed = _shift_padded(x.index_select(0, ends), dy.index_select(0, ends), dx.index_select(0, ends), pad)
    out[:k], out[b - k :] = fixed[:k], fixed[k:]
    return out


def _shift_padded(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, pad: int) -> torch.Tensor:
    """_shift through windows of a zero-padded copy (RandomCrop(H, padding=pad) spelled out)."""
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad)).contiguous()  # zeros, as RandomCrop(padding=p) pads
    h2, w2 = h + 2 * pad, w + 2 * pad
    n_offsets = padded.numel() - ((c - 1) * h2 * w2 + (h - 1) * w2 + w) + 1
    windows = padded.as_strided((n_offsets, c, h, w), (1, h2 * w2, w2, 1))
    starts = torch.arange(b, device=x.device) * (c * h2 * w2) + (dy + pad) * w2 + (dx + pad)
    return windows.index_select(0, starts)


@AUGMENTATIONS.register(
    "rotate",
    default_strength=15.0,
    strength_range=(0.0, 180.0),
    doc="rotation by an angle uniform in [-strength, strength] degrees, bilinear, 0 outside",
)
def rotate(strength: float | None, fill: Fill) -> Augment:
    max_degrees = float(strength or 0.0)
    if max_degrees == 0.0:
        return _identity

    def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b = x.shape[0]
        angle = (torch.rand(b, generator=generator, device=x.device) * 2 - 1) * max_degrees
        zero = torch.zeros_like(angle)
        inverse = _inverse_affine_matrices(angle, zero, zero, zero, zero, zero, zero)  # about the centre
        return _warp(x, inverse, mode="bilinear")

    return augment


@functools.lru_cache(maxsize=32)
def _fill_tensor(fill: Fill, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.tensor(fill, dtype=dtype).to(device)  # once per device: each copy to a GPU is a host sync


@AUGMENTATIONS.register(
    "cutout",
    default_strength=lambda image_size: image_size // 2,
    strength_range=(0.0, math.inf),
    strength_integer=True,
    doc="one strength x strength square per image at a uniform centre (clipped at borders), set to the mean",
)
def cutout(strength: float | None, fill: Fill) -> Augment:
    side = int(strength or 0)
    if side == 0:
        return _identity

    def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, c, h, w = x.shape
        if len(fill) not in (1, c):
            raise ValueError(f"cutout fill needs 1 or {c} values (the per-channel mean), got {fill}")
        # DeVries & Taylor: the centre is uniform over the image, so squares near a border are clipped
        top = torch.randint(0, h, (b,), generator=generator, device=x.device) - side // 2
        left = torch.randint(0, w, (b,), generator=generator, device=x.device) - side // 2
        rows, cols = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
        in_rows = (rows >= top[:, None]) & (rows < top[:, None] + side)  # (B, H)
        in_cols = (cols >= left[:, None]) & (cols < left[:, None] + side)  # (B, W)
        mask = in_rows[:, None, :, None] & in_cols[:, None, None, :]  # (B, 1, H, W)
        paint = _fill_tensor(fill, x.dtype, x.device).view(1, -1, 1, 1)
        return torch.where(mask, paint, x)

    return augment


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
# policies in trainables.policies draw from their own op spaces and hand these indices to the kernels.
KERNEL_OPS: tuple[str, ...] = (*TA_OPS, "Invert")
_OP = {name: i for i, name in enumerate(KERNEL_OPS)}


@functools.lru_cache(maxsize=16)
def _ta_tables(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n_ops, 31) magnitude per op and bin (0 for ops without one), (n_ops,) signed flags; on the CPU."""
    rows = []
    for magnitudes_fn, _ in _TA_SPACE.values():
        bins = magnitudes_fn(TA_NUM_BINS, height, width)
        rows.append(torch.zeros(TA_NUM_BINS) if bins is None else bins.float())
    signed = torch.tensor([s for _, s in _TA_SPACE.values()])
    return torch.stack(rows), signed


@functools.lru_cache(maxsize=16)
def _ta_tables_on(height: int, width: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return tuple(t.to(device) for t in _ta_tables(height, width))  # type: ignore[return-value]


def _draw_trivialaugment(
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
    return ops, bins, _scale_magnitudes(ops, magnitudes, strength)


def _scale_magnitudes(ops: torch.Tensor, magnitudes: torch.Tensor, strength: float) -> torch.Tensor:
    if strength == 1.0:
        return magnitudes
    # Posterize's magnitude is bits and Solarize's a threshold: identity is 8 bits and threshold 1, so scale
    # the distance from there. Bits stay whole numbers, as posterize needs.
    scaled = magnitudes * strength
    scaled = torch.where(ops == _OP["Posterize"], torch.round(8 - strength * (8 - magnitudes)), scaled)
    return torch.where(ops == _OP["Solarize"], 1 - strength * (1 - magnitudes), scaled)


# Group kernels: (images, their op indices, their magnitudes in torchvision's units) -> None, overwriting the
# images in place. The images are a slice of the batch's own sorted copy, so writing into them saves the
# kernel's output buffer and a copy back (fresh batch-sized memory costs page faults on CPU). Magnitudes are
# per sample; the colour factors are 1 + magnitude, as in torchvision's _apply_image_or_video_transform.


def _ta_identity(x: torch.Tensor, ops: torch.Tensor, m: torch.Tensor) -> None:
    return None


def _ta_geometric(x: torch.Tensor, ops: torch.Tensor, m: torch.Tensor, mode: str = "nearest") -> None:
    """ShearX/Y, TranslateX/Y and Rotate with per-sample matrices, 0 outside; `mode`: nearest (TrivialAugment,
    RandAugment, AutoAugment) or bilinear (AugMix)."""
    _, _, h, w = x.shape
    zero = torch.zeros_like(m)
    shear = torch.rad2deg(torch.atan(m))  # torchvision: shear angle atan(magnitude), see its AutoAugment note
    shear_x = torch.where(ops == _OP["ShearX"], shear, zero)
    shear_y = torch.where(ops == _OP["ShearY"], shear, zero)
    translate_x = torch.where(ops == _OP["TranslateX"], m.trunc(), zero)  # torchvision: int(magnitude) pixels
    translate_y = torch.where(ops == _OP["TranslateY"], m.trunc(), zero)
    angle = torch.where(ops == _OP["Rotate"], -m, zero)  # F.rotate hands -angle to the affine matrix
    # shears are about the top-left corner (torchvision passes center=[0, 0]); rotation about the centre
    is_shear = (ops == _OP["ShearX"]) | (ops == _OP["ShearY"])
    center_x = torch.where(is_shear, -w / 2, zero)
    center_y = torch.where(is_shear, -h / 2, zero)
    inverse = _inverse_affine_matrices(angle, shear_x, shear_y, translate_x, translate_y, center_x, center_y)
    x.copy_(_warp(x, inverse, mode=mode))


def _blend_(x: torch.Tensor, degenerate: torch.Tensor, factor: torch.Tensor) -> None:
    # torchvision's _blend with a per-sample ratio, in place: factor 1 is the image, 0 the degenerate image
    f = _per_sample(factor).to(x.dtype)
    x.mul_(f).add_(degenerate * (1 - f)).clamp_(0, 1)


def _grayscale(x: torch.Tensor) -> torch.Tensor:
    return TF.rgb_to_grayscale(x) if x.shape[1] == 3 else x  # (B, 1, H, W)


def _ta_brightness(x: torch.Tensor, ops: torch.Tensor, m: torch.Tensor) -> None:
    x.mul_(_per_sample(1 + m).to(x.dtype)).clamp_(0, 1)  # a blend with black


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
    levels = _per_sample(torch.exp2(m)).to(x.dtype)
    torch.minimum(x.mul_(levels).floor_(), levels - 1, out=x).div_(levels)


def _ta_solarize(x: torch.Tensor, ops: torch.Tensor, m: torch.Tensor) -> None:
    # torchvision: where(x >= threshold, 1 - x, x), the threshold a fraction of 1.0. Written as |x - 1| for
    # the inverted pixels and |x - 0| for the rest, which is twice as fast on CPU as torch.where.
    inverted = (x >= _per_sample(m).to(x.dtype)).to(x.dtype)
    x.sub_(inverted).abs_()


def _ta_autocontrast(x: torch.Tensor, ops: torch.Tensor, m: torch.Tensor) -> None:
    x.copy_(TF.autocontrast(x))  # already per image and channel


def _ta_equalize(x: torch.Tensor, ops: torch.Tensor, m: torch.Tensor) -> None:
    x.copy_(TF.equalize(x))  # per image; quantises a float batch to uint8 for the histogram and back


def _ta_invert(x: torch.Tensor, ops: torch.Tensor, m: torch.Tensor) -> None:
    x.neg_().add_(1)  # torchvision's float invert: 1 - x


_TaKernel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None]
_TA_GROUPS: tuple[tuple[tuple[str, ...], _TaKernel], ...] = (
    (("Identity",), _ta_identity),
    (("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"), _ta_geometric),
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


def _apply_trivialaugment(
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
        if len(xg) and kernel is _ta_geometric:
            _ta_geometric(xg, og, mg, mode=interpolation)
        elif len(xg) and kernel is not _ta_identity:
            kernel(xg, og, mg)
    return images.index_select(0, torch.argsort(order))


def _apply_ta_op(
    x: torch.Tensor, op: str, magnitudes: torch.Tensor | float, interpolation: str = "nearest"
) -> torch.Tensor:
    """Apply kernel op `op` to every image of `x` at per-sample `magnitudes` (tests pin op and m)."""
    ops = torch.full((x.shape[0],), _OP[op], device=x.device)
    m = torch.as_tensor(magnitudes, dtype=torch.float32, device=x.device).expand(x.shape[0])
    return _apply_trivialaugment(x, ops, m, interpolation)


@AUGMENTATIONS.register(
    "trivialaugment",
    default_strength=1.0,
    strength_range=(0.0, 1.0),
    strength_open_low=True,
    doc="TrivialAugmentWide, one op per image; strength in (0, 1] scales its magnitudes (1 = torchvision's)",
)
def trivialaugment(strength: float | None, fill: Fill) -> Augment:
    scale = 1.0 if strength is None else float(strength)

    def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, _, h, w = x.shape
        ops, _, magnitudes = _draw_trivialaugment(b, h, w, generator, x.device, scale)
        return _apply_trivialaugment(x, ops, magnitudes)

    return augment


# The paper's other policies (composites with crop and flip, RandAugment, AutoAugment, AugMix, perspective)
# register themselves into AUGMENTATIONS from trainables.policies, which builds on the kernels above. Imported
# last, once every name it takes from here exists, so that importing either module registers all policies.
from . import policies  # noqa: E402, F401
