"""The simple policies: none, flip, crop, rotate, cutout."""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from .core import AUGMENTATIONS, Augment, Fill, identity, inverse_affine_matrices, warp

# -----------------------------------------------------------------------------
# Simple policies (their `ops`: core.OP_COVERS)

FLIP_OPS, CROP_OPS, CUTOUT_OPS = ("HorizontalFlip",), ("Crop",), ("Cutout",)


@AUGMENTATIONS.register("none", default_strength=None, strength_range=None, doc="identity (the baseline)")
def none(strength: float | None, fill: Fill) -> Augment:
    return identity


# flip's default stays None (not 0.5): a cell's key hashes the resolved strength, and flip's cells predate its
# strength. None and 0.5 flip alike.
@AUGMENTATIONS.register(
    "flip",
    ops=FLIP_OPS,
    default_strength=None,
    strength_range=(0.0, 1.0),
    doc="horizontal flip with probability `strength` per image (default None: p = 0.5)",
)
def flip(strength: float | None, fill: Fill) -> Augment:
    p = 0.5 if strength is None else float(strength)
    if p == 0.0:
        return identity

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
    ops=CROP_OPS,
    default_strength=4.0,
    strength_range=(0.0, math.inf),
    strength_integer=True,
    doc="random crop back to size after zero padding of `strength` pixels (RandomCrop(H, padding))",
)
def crop(strength: float | None, fill: Fill) -> Augment:
    pad = int(strength or 0)
    if pad == 0:
        return identity

    def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b = x.shape[0]
        # the window's offset in the zero-padded image, 0..2p on each axis (RandomCrop's draw), as a shift
        dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=x.device) - pad
        dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=x.device) - pad
        return shift(x, dy, dx, pad)

    return augment


def shift(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, pad: int) -> torch.Tensor:
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
        return shift_padded(x, dy, dx, pad)
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
    fixed = shift_padded(x.index_select(0, ends), dy.index_select(0, ends), dx.index_select(0, ends), pad)
    out[:k], out[b - k :] = fixed[:k], fixed[k:]
    return out


def shift_padded(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, pad: int) -> torch.Tensor:
    """shift through windows of a zero-padded copy (RandomCrop(H, padding=pad) spelled out)."""
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad)).contiguous()  # zeros, as RandomCrop(padding=p) pads
    h2, w2 = h + 2 * pad, w + 2 * pad
    n_offsets = padded.numel() - ((c - 1) * h2 * w2 + (h - 1) * w2 + w) + 1
    windows = padded.as_strided((n_offsets, c, h, w), (1, h2 * w2, w2, 1))
    starts = torch.arange(b, device=x.device) * (c * h2 * w2) + (dy + pad) * w2 + (dx + pad)
    return windows.index_select(0, starts)


@AUGMENTATIONS.register(
    "rotate",
    ops=("Rotate",),
    default_strength=15.0,
    strength_range=(0.0, 180.0),
    doc="rotation by an angle uniform in [-strength, strength] degrees, bilinear, 0 outside",
)
def rotate(strength: float | None, fill: Fill) -> Augment:
    max_degrees = float(strength or 0.0)
    if max_degrees == 0.0:
        return identity

    def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b = x.shape[0]
        angle = (torch.rand(b, generator=generator, device=x.device) * 2 - 1) * max_degrees
        zero = torch.zeros_like(angle)
        inverse = inverse_affine_matrices(angle, zero, zero, zero, zero, zero, zero)  # about the centre
        return warp(x, inverse, mode="bilinear")

    return augment


@functools.lru_cache(maxsize=32)
def _fill_tensor(fill: Fill, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.tensor(fill, dtype=dtype).to(device)  # once per device: each copy to a GPU is a host sync


@AUGMENTATIONS.register(
    "cutout",
    ops=CUTOUT_OPS,
    default_strength=lambda image_size: image_size // 2,
    strength_range=(0.0, math.inf),
    strength_integer=True,
    doc="one strength x strength square per image at a uniform centre (clipped at borders), set to the mean",
)
def cutout(strength: float | None, fill: Fill) -> Augment:
    side = int(strength or 0)
    if side == 0:
        return identity

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
