"""The augmentation registry and its public API (create, check, default strengths), the checks every policy
shares, and the shared geometry: per-sample affine maps through one grid_sample call."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from numbers import Real

import torch
import torch.nn.functional as F

from ..registry import Registry

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
#   ops:              the ops it applies, by name (the very tables its code draws from: TA_OPS, RA_OPS, ...);
#                     what it covers follows from them (`covers`), so the label cannot drift from the code
#   doc:              one line for `augworth presets` and error messages
AUGMENTATIONS: Registry[PolicyFactory] = Registry(
    "augmentation", meta=("default_strength", "strength_range", "strength_integer", "strength_open_low", "ops"))

# What each op can do to an image, in the names of the corruptions the eval sets hold (`corrupted`'s and
# CIFAR-10-C's). A policy covers a corruption where one of its ops does: `analyze --question ood` calls a shift
# held out for a policy only where it covers none of the shift's corruptions. The colour ops are signed (a factor
# 1 ± m), so each goes both ways: Sharpness below 1 smooths (blur), Color changes the saturation, Brightness and
# Contrast darken, brighten and flatten. Shear, Posterize, Solarize, AutoContrast, Equalize and Invert change
# the image in ways no eval set's corruption names; a flip and a cutout square likewise.
OP_COVERS: dict[str, tuple[str, ...]] = {
    "Identity": (),
    "ShearX": (), "ShearY": (),
    "TranslateX": ("shift",), "TranslateY": ("shift",),
    "Rotate": ("rotation",),
    "Brightness": ("brightness",),
    "Color": ("saturate",),
    "Contrast": ("contrast",),
    "Sharpness": ("blur", "gaussian_blur", "defocus_blur"),
    "Posterize": (), "Solarize": (), "AutoContrast": (), "Equalize": (), "Invert": (),
    "Crop": ("shift",),  # a random crop of a padded image moves it by up to the padding
    "HorizontalFlip": (),
    "Cutout": (),
    "Perspective": ("shift", "rotation"),  # moved corners shift and turn the image as a whole, among other things
}


def covers(name: str) -> tuple[str, ...]:
    """The corruptions policy `name` covers: those some op it applies (its registry entry's `ops`) can make."""
    ops = AUGMENTATIONS.get(name).meta.get("ops", ())
    unknown = [op for op in ops if op not in OP_COVERS]
    if unknown:
        raise ValueError(f"augmentation {name!r} declares ops {', '.join(unknown)} that OP_COVERS does not know "
                         f"(known: {', '.join(OP_COVERS)})")
    return tuple(sorted({c for op in ops for c in OP_COVERS[op]}))


# The metadata of a policy whose strength in (0, 1] scales torchvision's magnitudes (1: torchvision's own).
SCALED_MAGNITUDES: dict[str, object] = dict(default_strength=1.0, strength_range=(0.0, 1.0), strength_open_low=True)


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
    values = (float(fill),) if isinstance(fill, Real) else tuple(float(v) for v in fill)  # type: ignore[union-attr]  # a Real is not a Sequence
    if not all(0.0 <= v <= 1.0 for v in values):
        raise ValueError(f"fill must lie in [0, 1] (a data-set mean of images in [0, 1]), got {values}")
    return values


def _check_batch(x: torch.Tensor) -> None:
    if x.ndim != 4 or x.shape[1] not in (1, 3) or not x.is_floating_point():
        raise ValueError(
            f"augmentations take a float batch (B, C, H, W) with C = 1 or 3 and values in [0, 1], "
            f"got {x.dtype} {tuple(x.shape)}"
        )


def per_sample(v: torch.Tensor) -> torch.Tensor:
    return v.view(-1, 1, 1, 1)  # (B,) -> (B, 1, 1, 1), broadcasts over (C, H, W)


def identity(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return x


# -----------------------------------------------------------------------------
# Shared geometry: per-sample affine maps through one grid_sample call


def inverse_affine_matrices(
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


def warp(x: torch.Tensor, inverse: torch.Tensor, mode: str) -> torch.Tensor:
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
