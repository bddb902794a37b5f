"""Built-in invariance (the paper's section 4): wrappers around a model, for horizontal flips and for translations.

A wrapper is registered in `INVARIANCES` as `wrap(model) -> nn.Module`; `wrap_invariance(name, model)` applies
one by name. The wrappers add no parameters (`param_count` is the inner model's) and keep the inner model as
`self.model`, so the wrapped state_dict holds the inner model's tensors under the prefix "model.".

- `none`: the model itself.
- `orbit_select`: the network sees one canonical member of each image's orbit {x, flip x} (`orbit_canonical`).
- `average`: logits (g(x) + g(flip x)) / 2, in training and in evaluation, from one forward of a 2B batch.
- `shift_average`: logits averaged over the 9 shifts of the image by up to one pixel (zero fill, as crop(1)).
- `center_of_mass`: each image rolled by whole pixels so that its centre of mass sits at the centre.

The translation wrappers are the ones that make sense where flips do not (digits are not mirror symmetric);
crop is their matching augmentation. `center_of_mass` is exactly invariant to whole-pixel shifts that keep the
content inside the frame (the centre of mass moves with the content, and the roll is floor(·)-rounded, which
commutes with integer shifts); `shift_average` only approximately (shifts with zero fill are not a group).

Both non-trivial wrappers are flip invariant bit for bit, f(x) == f(flip x) in train and eval mode, not just up
to rounding: what reaches the inner model is a function of the orbit alone, so x and flip x give the network
identical input tensors (see `orbit_canonical`). Everything is batched tensor code without per-image Python
control flow, so the wrappers work under torch.compile and with channels_last inputs (flip and where keep the
layout). Non-finite inputs are not covered by the exactness guarantee.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .registry import Registry

# forward_cost: images through the model per input image; makes_redundant: augmentations that change nothing
# for a model wrapped so (a flip-invariant model sees flip(x) as x): `plan` warns about such treatments
INVARIANCES: Registry[Callable[[nn.Module], nn.Module]] = Registry(
    "invariance", meta=("forward_cost", "makes_redundant"))


def flip_score(x: Tensor) -> Tensor:
    """The orbit-selection score, (B, C, H, W) -> (B,) float32, with flip_score(flip x) == -flip_score(x) exactly.

    The horizontal forward-difference gradient x[..., j+1] - x[..., j], summed over all pixels and channels with
    a fixed parabola weight (j + 1)(W - 1 - j) (mirror-symmetric, largest in the centre), equals by summation by
    parts 2 * sum_j (j - (W-1)/2) x[..., j]: the horizontal centre of mass, positive when the image is heavier
    on its right. It is computed in mirrored column pairs,

        s(x) = sum over c, i and j < W/2 of ((W-1)/2 - j) * (x[c, i, W-1-j] - x[c, i, j]),

    because then flipping negates every term exactly (a - b == -(b - a) in IEEE arithmetic, and rounding is
    sign symmetric) and the terms are summed in the same order, so the float result is negated exactly too
    (summing the full weighted image instead would round x and flip x differently).
    """
    half = x.shape[-1] // 2
    pairs = (x.flip(-1)[..., :half] - x[..., :half]).float()  # (B, C, H, W//2): right minus left
    weights = (x.shape[-1] - 1) / 2 - torch.arange(half, device=x.device, dtype=torch.float32)
    # contiguous (B, C*H*W//2) rows: the same reduction order whatever the input's memory format
    return (pairs * weights).reshape(x.shape[0], -1).sum(1)


def orbit_canonical(x: Tensor) -> Tensor:
    """Per image, x or flip_w(x), chosen so that orbit_canonical(x) and orbit_canonical(flip x) are identical.

    Primary key: the gradient score (`flip_score`); keep x where s(x) > 0, flip it where s(x) < 0. Ties
    (s == 0, which also happens for images that are not symmetric) are broken by comparing x and flip x
    lexicographically in (C, H, W) order: keep x if it is not larger at the first position where the two
    differ. That position is the same for x and flip x and the comparison reverses, so both pick the same
    member; a symmetric image has nothing to choose. Negative zeros are made positive first, so "compares
    equal" means "the same bits" and the canonical image is unique bit for bit.
    """
    x = torch.where(x == 0, torch.zeros_like(x), x)  # -0.0 -> +0.0 (x + 0 might be folded away by a compiler)
    flipped = x.flip(-1)
    score = flip_score(x)
    a, b = x.reshape(x.shape[0], -1), flipped.reshape(x.shape[0], -1)
    first = torch.argmax((a != b).to(torch.uint8), dim=1, keepdim=True)  # first difference (0 if none)
    lexicographic_keep = (a.gather(1, first) <= b.gather(1, first)).squeeze(1)
    keep = (score > 0) | ((score == 0) & lexicographic_keep)
    return torch.where(keep[:, None, None, None], x, flipped)


class OrbitSelect(nn.Module):
    """The inner model applied to `orbit_canonical(x)`: exactly flip invariant, one forward per image."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(orbit_canonical(x))


class FlipAverage(nn.Module):
    """Logits (g(x) + g(flip x)) / 2 from one forward of the concatenated batch (B -> 2B images).

    BatchNorm in training mode therefore computes its batch statistics over both views together; this is
    intended (the statistics are flip invariant as a whole). The pair is fed in a canonical order,
    [c; flip c] with c = orbit_canonical(x): {c, flip c} is {x, flip x}, so this is the same average, but x and
    flip x then produce the identical 2B batch and the logits agree bit for bit even in training mode, where a
    swapped order [flip x; x] would change the order of BatchNorm's reductions (and could change the last bits).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        c = orbit_canonical(x)
        logits = self.model(torch.cat([c, c.flip(-1)]))
        n = x.shape[0]
        return (logits[:n] + logits[n:]) / 2


def center_of_mass_roll(x: Tensor) -> Tensor:
    """Each image of (B, C, H, W) rolled by whole pixels so that its centre of mass lands on (H // 2, W // 2).

    Mass is intensity above the image's minimum (the background), summed over channels. The roll is
    floor(centre − mass centre + 1/2), and floor(t + k) = floor(t) + k for whole k: an image shifted by k pixels,
    content still inside, is rolled to the same tensor. One gather per axis, no per-image Python.
    """
    b, _, h, w = x.shape
    mass = (x - x.amin(dim=(1, 2, 3), keepdim=True)).float().sum(1)  # (B, H, W)
    total = mass.sum((1, 2)).clamp_min(1e-12)
    rows = torch.arange(h, device=x.device, dtype=torch.float32)
    cols = torch.arange(w, device=x.device, dtype=torch.float32)
    cy, cx = (mass.sum(2) * rows).sum(1) / total, (mass.sum(1) * cols).sum(1) / total
    dy = torch.floor(h // 2 - cy + 0.5).long()
    dx = torch.floor(w // 2 - cx + 0.5).long()
    row_index = (torch.arange(h, device=x.device)[None, :] - dy[:, None]) % h  # out[i] = x[i − dy]
    col_index = (torch.arange(w, device=x.device)[None, :] - dx[:, None]) % w
    x = x.gather(2, row_index[:, None, :, None].expand_as(x))
    return x.gather(3, col_index[:, None, None, :].expand_as(x))


class CenterOfMass(nn.Module):
    """The inner model applied to `center_of_mass_roll(x)`: one forward per image."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(center_of_mass_roll(x))


class ShiftAverage(nn.Module):
    """Logits averaged over the image shifted by −1, 0, 1 pixels on each axis (zero fill): one forward of 9B."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        padded = F.pad(x, (1, 1, 1, 1))
        shifts = itertools.product((-1, 0, 1), repeat=2)
        views = [padded[..., 1 + dy:1 + dy + h, 1 + dx:1 + dx + w] for dy, dx in shifts]
        logits = self.model(torch.cat(views))
        return logits.view(len(views), x.shape[0], -1).mean(0)


@INVARIANCES.register("none", doc="no built-in invariance: the model itself", forward_cost=1.0)
def none(model: nn.Module) -> nn.Module:
    return model


@INVARIANCES.register("average", doc="logits averaged over x and its horizontal flip (one forward of 2B images)",
                      forward_cost=2.0, makes_redundant=("flip",))
def average(model: nn.Module) -> nn.Module:
    return FlipAverage(model)


@INVARIANCES.register("orbit_select", doc="each image is flipped or not by a fixed gradient score (canonical "
                      "member of its flip orbit) before the model", forward_cost=1.0, makes_redundant=("flip",))
def orbit_select(model: nn.Module) -> nn.Module:
    return OrbitSelect(model)


@INVARIANCES.register("shift_average", doc="logits averaged over the 9 shifts of up to one pixel (zero fill, as "
                      "crop(1)); translation invariant only approximately", forward_cost=9.0)
def shift_average(model: nn.Module) -> nn.Module:
    return ShiftAverage(model)


@INVARIANCES.register("center_of_mass", doc="each image rolled so its centre of mass is at the centre: invariant "
                      "to whole-pixel shifts that keep the content inside (orbit selection for translations)",
                      forward_cost=1.0)
def center_of_mass(model: nn.Module) -> nn.Module:
    return CenterOfMass(model)


def wrap_invariance(name: str, model: nn.Module) -> nn.Module:
    """The model wrapped by the invariance `name` (an UnknownNameError lists the valid names)."""
    return INVARIANCES.get(name).factory(model)
