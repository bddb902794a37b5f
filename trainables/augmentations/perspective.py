"""RandomPerspective, batched: one homography per image, one grid_sample for the batch."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from .core import AUGMENTATIONS, Augment, Fill, identity

# -----------------------------------------------------------------------------
# RandomPerspective(distortion_scale=strength, p=0.5), bilinear, fill 0, as torchvision.transforms.v2 does it:
# per image the four corners move inwards by offsets drawn as RandomPerspective.make_params draws them, the
# homography from the moved corners back to the original ones is solved (in float64, as torchvision's
# _get_perspective_coeffs does, but batched), and the batch is resampled through one grid_sample.

PERSPECTIVE_P = 0.5


def draw_perspective(
    batch: int,
    height: int,
    width: int,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    distortion_scale: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image: whether it is warped (B,), and its end points (B, 4, 2) as (x, y) in pixels for the corners
    top-left, top-right, bottom-right, bottom-left (torchvision's order)."""
    apply = torch.rand(batch, generator=generator, device=device) < PERSPECTIVE_P  # torchvision: skip if >= p
    bound_h = int(distortion_scale * (height // 2)) + 1
    bound_w = int(distortion_scale * (width // 2)) + 1
    # torchvision's randint(0, bound) at a near edge and randint(size - bound, size) at a far one
    dx = torch.randint(0, bound_w, (batch, 4), generator=generator, device=device)
    dy = torch.randint(0, bound_h, (batch, 4), generator=generator, device=device)
    corner = torch.arange(4, device=device)  # top-left, top-right, bottom-right, bottom-left
    far_x, far_y = (corner == 1) | (corner == 2), corner >= 2
    xs = torch.where(far_x, width - bound_w + dx, dx)
    ys = torch.where(far_y, height - bound_h + dy, dy)
    return apply, torch.stack([xs, ys], dim=-1)


@functools.lru_cache(maxsize=16)
def _perspective_constants(height: int, width: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The start points (the image corners, (4, 2)) and the identity's coefficients (8,), float64, on `device`
    once (each copy to a GPU is a host sync)."""
    corners = [[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]]
    start = torch.tensor(corners, dtype=torch.float64).to(device)
    return start, torch.tensor([1, 0, 0, 0, 1, 0, 0, 0], dtype=torch.float64).to(device)


def perspective_coefficients(endpoints: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision's _get_perspective_coeffs(startpoints = the image corners, endpoints) for a batch: (B, 4, 2)
    -> (B, 8) float32 coefficients mapping output pixels to input pixels, and (B,) whether the system was
    solvable. A degenerate quadrilateral (possible only for distortion_scale near 1) gets the identity."""
    b = endpoints.shape[0]
    start, identity = _perspective_constants(height, width, endpoints.device)
    start = start.expand(b, 4, 2)
    end = endpoints.to(torch.float64)
    ex, ey, sx, sy = end[..., 0], end[..., 1], start[..., 0], start[..., 1]  # (B, 4) each
    one, zero = torch.ones_like(ex), torch.zeros_like(ex)
    rows_x = torch.stack([ex, ey, one, zero, zero, zero, -sx * ex, -sx * ey], dim=-1)  # (B, 4, 8)
    rows_y = torch.stack([zero, zero, zero, ex, ey, one, -sy * ex, -sy * ey], dim=-1)
    a = torch.stack([rows_x, rows_y], dim=2).reshape(b, 8, 8)  # rows interleaved x, y per corner
    rhs = start.reshape(b, 8)
    solution, info = torch.linalg.solve_ex(a, rhs)
    ok = (info == 0) & torch.isfinite(solution).all(dim=1)
    return torch.where(ok[:, None], solution, identity).to(torch.float32), ok


def apply_perspective(x: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """Warp image b by coefficients[b] (B, 8) as torchvision's perspective_image(..., bilinear, fill=0) does."""
    _, _, h, w = x.shape
    c = coefficients.to(x.dtype)[:, :, None, None]  # (B, 8, 1, 1)
    # torchvision's _perspective_grid: output pixel centres at (i + 0.5, j + 0.5), mapped through the homography
    # and scaled to [-1, 1] (align_corners=False)
    xs = torch.linspace(0.5, w - 0.5, w, device=x.device, dtype=x.dtype)  # (W,)
    ys = torch.linspace(0.5, h - 0.5, h, device=x.device, dtype=x.dtype)[:, None]  # (H, 1)
    den = c[:, 6] * xs + c[:, 7] * ys + 1  # (B, H, W)
    gx = (c[:, 0] * xs + c[:, 1] * ys + c[:, 2]) / (0.5 * w) / den - 1
    gy = (c[:, 3] * xs + c[:, 4] * ys + c[:, 5]) / (0.5 * h) / den - 1
    # Where the denominator is 0 (strong distortions, outside the moved corners) torchvision's grid holds NaN
    # or inf and so does its output; here those pixels read from outside the image: 0. Any |g| >= 2 reads
    # only outside, so clamping there changes nothing else (and keeps huge values from overflowing).
    gx = torch.nan_to_num(gx, nan=2.0, posinf=2.0, neginf=-2.0).clamp_(-2, 2)
    gy = torch.nan_to_num(gy, nan=2.0, posinf=2.0, neginf=-2.0).clamp_(-2, 2)
    out = F.grid_sample(x, torch.stack([gx, gy], dim=-1), mode="bilinear", padding_mode="zeros", align_corners=False)
    # torchvision's fill=0 also samples a mask of ones and multiplies by it (its _apply_grid_transform), which
    # darkens pixels that read partly from outside once more. The mask is the part of each bilinear weight that
    # falls inside the image, a product of an x and a y factor: computed here rather than resampled.
    return out.mul_(_inside_weight(gx, w).mul_(_inside_weight(gy, h))[:, None])


def _inside_weight(g: torch.Tensor, size: int) -> torch.Tensor:
    """Along one axis, the bilinear weight on in-image pixels at grid_sample coordinate g (align_corners=False)."""
    pos = ((g + 1) * size - 1) / 2  # pixel index space
    lo = torch.floor(pos)
    frac = pos - lo
    lo_in = ((lo >= 0) & (lo <= size - 1)).to(g.dtype)
    hi_in = ((lo >= -1) & (lo <= size - 2)).to(g.dtype)
    return (1 - frac) * lo_in + frac * hi_in


@AUGMENTATIONS.register(
    "perspective",
    ops=("Perspective",),
    default_strength=0.5,
    strength_range=(0.0, 1.0),
    doc="RandomPerspective(distortion_scale=`strength`, p=0.5), bilinear, 0 outside",
)
def perspective(strength: float | None, fill: Fill) -> Augment:
    scale = 0.5 if strength is None else float(strength)
    if scale == 0.0:
        return identity  # the corners stay put: the identity map

    def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, _, h, w = x.shape
        apply, endpoints = draw_perspective(b, h, w, generator, x.device, scale)
        # warp only the drawn half: nonzero is one host sync per batch (as TrivialAugment's grouping has)
        index = apply.nonzero().squeeze(1)
        chosen = endpoints.index_select(0, index)
        coefficients, _ = perspective_coefficients(chosen, h, w)
        return x.index_copy(0, index, apply_perspective(x.index_select(0, index), coefficients))

    return augment
