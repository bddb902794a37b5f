"""RandAugment, AutoAugment (CIFAR-10 policy) and AugMix, batched like TrivialAugment: everything drawn per
image from the generator, the whole batch in one go, and applied with TrivialAugment's op kernels
(`apply_kernel_ops`). Deterministic given the generator state."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from .core import AUGMENTATIONS, SCALED_MAGNITUDES, Augment, Fill
from .trivialaugment import KERNEL_OPS, OP_INDEX, apply_kernel_ops, scale_magnitudes

__all__ = ["AA_CIFAR10_POLICY", "AA_OPS", "AA_POLICY_OPS", "AUGMIX_OPS", "RA_META", "RA_OPS"]


# -----------------------------------------------------------------------------
# Op spaces shared by RandAugment, AutoAugment and AugMix
#
# Copied from torchvision.transforms.v2 (order included) so that a torchvision upgrade cannot silently change a
# treatment; the tests check that they still equal torchvision's. op -> (magnitude bins as a function of
# (num_bins, height, width) or None, signed).

_Space = dict[str, tuple[Callable[[int, int, int], torch.Tensor | None], bool]]


def _linspace(hi: float) -> Callable[[int, int, int], torch.Tensor]:
    return lambda num_bins, height, width: torch.linspace(0.0, hi, num_bins)


def _none(num_bins: int, height: int, width: int) -> None:
    return None


def _posterize(top: int, steps: int) -> Callable[[int, int, int], torch.Tensor]:
    return lambda num_bins, height, width: (top - (torch.arange(num_bins) / ((num_bins - 1) / steps))).round().int()


def _solarize(num_bins: int, height: int, width: int) -> torch.Tensor:
    return torch.linspace(1.0, 0.0, num_bins)


# torchvision.transforms.v2.RandAugment._AUGMENTATION_SPACE
_RA_SPACE: _Space = {
    "Identity": (_none, False),
    "ShearX": (_linspace(0.3), True),
    "ShearY": (_linspace(0.3), True),
    "TranslateX": (lambda num_bins, height, width: torch.linspace(0.0, 150.0 / 331.0 * width, num_bins), True),
    "TranslateY": (lambda num_bins, height, width: torch.linspace(0.0, 150.0 / 331.0 * height, num_bins), True),
    "Rotate": (_linspace(30.0), True),
    "Brightness": (_linspace(0.9), True),
    "Color": (_linspace(0.9), True),
    "Contrast": (_linspace(0.9), True),
    "Sharpness": (_linspace(0.9), True),
    "Posterize": (_posterize(8, 4), False),
    "Solarize": (_solarize, False),
    "AutoContrast": (_none, False),
    "Equalize": (_none, False),
}
# torchvision.transforms.v2.AutoAugment._AUGMENTATION_SPACE: RandAugment's without Identity, plus Invert
_AA_SPACE: _Space = {**{k: v for k, v in _RA_SPACE.items() if k != "Identity"}, "Invert": (_none, False)}
# torchvision.transforms.v2.AugMix._AUGMENTATION_SPACE (all_ops=True)
_AUGMIX_SPACE: _Space = {
    "ShearX": (_linspace(0.3), True),
    "ShearY": (_linspace(0.3), True),
    "TranslateX": (lambda num_bins, height, width: torch.linspace(0.0, width / 3.0, num_bins), True),
    "TranslateY": (lambda num_bins, height, width: torch.linspace(0.0, height / 3.0, num_bins), True),
    "Rotate": (_linspace(30.0), True),
    "Posterize": (_posterize(4, 4), False),
    "Solarize": (_solarize, False),
    "AutoContrast": (_none, False),
    "Equalize": (_none, False),
    "Brightness": (_linspace(0.9), True),
    "Color": (_linspace(0.9), True),
    "Contrast": (_linspace(0.9), True),
    "Sharpness": (_linspace(0.9), True),
}
RA_OPS: tuple[str, ...] = tuple(_RA_SPACE)
AA_OPS: tuple[str, ...] = tuple(_AA_SPACE)
AUGMIX_OPS: tuple[str, ...] = tuple(_AUGMIX_SPACE)
_SPACES: dict[str, _Space] = {"randaugment": _RA_SPACE, "autoaugment": _AA_SPACE, "augmix": _AUGMIX_SPACE}


@functools.lru_cache(maxsize=32)
def space_tables(space: str, num_bins: int, height: int, width: int) -> tuple[torch.Tensor, ...]:
    """For op space `space`: (n_ops,) kernel op index of each of its ops, (n_kernel_ops, num_bins) magnitude per
    kernel op and bin (0 for ops without one or outside the space), (n_kernel_ops,) signed flags; on the CPU."""
    ops = _SPACES[space]
    kernel_ids = torch.tensor([OP_INDEX[name] for name in ops])
    table = torch.zeros(len(KERNEL_OPS), num_bins)
    signed = torch.zeros(len(KERNEL_OPS), dtype=torch.bool)
    for name, (magnitudes_fn, is_signed) in ops.items():
        bins = magnitudes_fn(num_bins, height, width)
        if bins is not None:
            table[OP_INDEX[name]] = bins.float()
        signed[OP_INDEX[name]] = is_signed
    return kernel_ids, table, signed


@functools.lru_cache(maxsize=32)
def _space_tables_on(
    space: str, num_bins: int, height: int, width: int, device: torch.device
) -> tuple[torch.Tensor, ...]:
    return tuple(t.to(device) for t in space_tables(space, num_bins, height, width))


def _signed(magnitudes: torch.Tensor, ops: torch.Tensor, signed: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    # torchvision negates a signed op's magnitude where `torch.rand(()) <= 0.5`
    return torch.where(signed[ops] & (u <= 0.5), -magnitudes, magnitudes)


# -----------------------------------------------------------------------------
# RandAugment (Cubuk et al. 2020): num_ops = 2 ops per image, each drawn uniformly (with replacement) from the
# 14 ops, all at one magnitude bin of 31, signed ops negated with p = 0.5; nearest interpolation, 0 outside.

RA_NUM_OPS = 2
RA_NUM_BINS = 31


def draw_randaugment(
    batch: int,
    height: int,
    width: int,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    magnitude: int = 9,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image and round: kernel op index and signed magnitude; each (B, RA_NUM_OPS)."""
    kernel_ids, table, signed = _space_tables_on("randaugment", RA_NUM_BINS, height, width, torch.device(device))
    picks = torch.randint(len(RA_OPS), (batch, RA_NUM_OPS), generator=generator, device=device)
    u = torch.rand(batch, RA_NUM_OPS, generator=generator, device=device)
    ops = kernel_ids[picks]
    return ops, _signed(table[ops, magnitude], ops, signed, u)


def apply_ops_in_turn(
    x: torch.Tensor, ops: torch.Tensor, magnitudes: torch.Tensor, interpolation: str = "nearest"
) -> torch.Tensor:
    """Apply op ops[b, k] at magnitudes[b, k] to image b for k = 0, 1, ... in turn."""
    for k in range(ops.shape[1]):
        x = apply_kernel_ops(x, ops[:, k], magnitudes[:, k], interpolation)
    return x


def randaugment_policy(magnitude: int) -> Augment:
    def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, _, h, w = x.shape
        ops, magnitudes = draw_randaugment(b, h, w, generator, x.device, magnitude)
        return apply_ops_in_turn(x, ops, magnitudes)

    return augment


RA_META = dict(default_strength=9.0, strength_range=(0.0, float(RA_NUM_BINS - 1)), strength_integer=True)


@AUGMENTATIONS.register(
    "randaugment",
    **RA_META,
    ops=RA_OPS,
    doc="RandAugment(num_ops=2, magnitude=`strength`, 31 bins): `strength` is the bin, a whole number in 0..30",
)
def randaugment(strength: float | None, fill: Fill) -> Augment:
    return randaugment_policy(int(9 if strength is None else strength))


# -----------------------------------------------------------------------------
# AutoAugment (Cubuk et al. 2019), CIFAR-10 policy: per image one of the 25 sub-policies uniformly; each of its
# two ops applied where `rand <= p`, at its magnitude bin of 10, signed ops negated with p = 0.5; nearest
# interpolation, 0 outside. `strength` in (0, 1] scales the magnitudes as trivialaugment's does.

AA_NUM_BINS = 10
# torchvision.transforms.v2.AutoAugment._get_policies(AutoAugmentPolicy.CIFAR10): ((op, p, bin), (op, p, bin))
AA_CIFAR10_POLICY: tuple[tuple[tuple[str, float, int | None], tuple[str, float, int | None]], ...] = (
    (("Invert", 0.1, None), ("Contrast", 0.2, 6)),
    (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
    (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)),
    (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.5, None), ("Equalize", 0.9, None)),
    (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
    (("Color", 0.4, 3), ("Brightness", 0.6, 7)),
    (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
    (("Equalize", 0.6, None), ("Equalize", 0.5, None)),
    (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
    (("Color", 0.7, 7), ("TranslateX", 0.5, 8)),
    (("Equalize", 0.3, None), ("AutoContrast", 0.4, None)),
    (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)),
    (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
    (("Solarize", 0.5, 2), ("Invert", 0.0, None)),
    (("Equalize", 0.2, None), ("AutoContrast", 0.6, None)),
    (("Equalize", 0.2, None), ("Equalize", 0.6, None)),
    (("Color", 0.9, 9), ("Equalize", 0.6, None)),
    (("AutoContrast", 0.8, None), ("Solarize", 0.2, 8)),
    (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
    (("Solarize", 0.4, 5), ("AutoContrast", 0.9, None)),
    (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.9, None), ("Solarize", 0.8, 3)),
    (("Equalize", 0.8, None), ("Invert", 0.1, None)),
    (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, None)),
)
# the ops this policy applies: those of its sub-policies with p > 0 (Invert at p = 0.0 in one never is)
AA_POLICY_OPS: tuple[str, ...] = tuple(dict.fromkeys(op for sub in AA_CIFAR10_POLICY for op, p, _ in sub if p > 0))


@functools.lru_cache(maxsize=8)
def _aa_policy_tables(device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(25, 2) kernel op index, (25, 2) probability, (25, 2) magnitude bin (0 where the op has none)."""
    ops = torch.tensor([[OP_INDEX[op] for op, _, _ in sub] for sub in AA_CIFAR10_POLICY])
    probs = torch.tensor([[p for _, p, _ in sub] for sub in AA_CIFAR10_POLICY])
    bins = torch.tensor([[b or 0 for _, _, b in sub] for sub in AA_CIFAR10_POLICY])
    return ops.to(device), probs.to(device), bins.to(device)


def draw_autoaugment(
    batch: int,
    height: int,
    width: int,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    strength: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image: sub-policy index (B,); then per image and slot, (B, 2) each: whether the op is applied, the
    kernel op index (Identity where not applied) and the signed magnitude scaled by strength (0 where not)."""
    device = torch.device(device)
    _, table, signed = _space_tables_on("autoaugment", AA_NUM_BINS, height, width, device)
    policy_ops, policy_probs, policy_bins = _aa_policy_tables(device)
    sub = torch.randint(len(AA_CIFAR10_POLICY), (batch,), generator=generator, device=device)
    u_apply = torch.rand(batch, 2, generator=generator, device=device)
    u_sign = torch.rand(batch, 2, generator=generator, device=device)
    applied = u_apply <= policy_probs[sub]  # torchvision: skip the op unless rand <= p
    ops = policy_ops[sub]
    magnitudes = scale_magnitudes(ops, _signed(table[ops, policy_bins[sub]], ops, signed, u_sign), strength)
    ops = torch.where(applied, ops, OP_INDEX["Identity"])
    return sub, applied, ops, torch.where(applied, magnitudes, 0.0)


@AUGMENTATIONS.register(
    "autoaugment",
    **SCALED_MAGNITUDES,
    ops=AA_POLICY_OPS,
    doc="AutoAugment, CIFAR-10 policy (one sub-policy per image); `strength` in (0, 1] scales its magnitudes",
)
def autoaugment(strength: float | None, fill: Fill) -> Augment:
    scale = 1.0 if strength is None else float(strength)

    def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, _, h, w = x.shape
        _, _, ops, magnitudes = draw_autoaugment(b, h, w, generator, x.device, scale)
        return apply_ops_in_turn(x, ops, magnitudes)

    return augment


# -----------------------------------------------------------------------------
# AugMix (Hendrycks et al. 2020), torchvision's defaults: mixture_width 3 chains per image, each of depth uniform
# in 1..3, each step an op drawn uniformly from the 13 ops (all_ops) at a bin uniform in 0..severity-1 of 10,
# signed ops negated with p = 0.5; bilinear interpolation, 0 outside. The result is m * x + (1 - m) * sum_i w_i
# chain_i(x) with m ~ Beta(alpha, alpha) and w ~ Dirichlet(alpha, ..., alpha). alpha is fixed at 1, where these
# are Uniform(0, 1) and normalised i.i.d. Exponential(1) draws: torch's Beta and Dirichlet samplers take no
# generator, exponential_ does.

AUGMIX_WIDTH = 3
AUGMIX_MAX_DEPTH = 3
AUGMIX_NUM_BINS = 10  # torchvision's _PARAMETER_MAX


def _dirichlet_ones(batch: int, k: int, generator: torch.Generator, device: torch.device | str) -> torch.Tensor:
    """(B, k) rows from Dirichlet(1, ..., 1): i.i.d. Exponential(1) draws divided by their sum."""
    e = torch.empty(batch, k, device=device).exponential_(generator=generator)
    return e / e.sum(dim=1, keepdim=True).clamp_min(torch.finfo(e.dtype).tiny)


def draw_augmix(
    batch: int,
    height: int,
    width: int,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    severity: int = 3,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image: chain depths (B, 3) in 1..3; kernel op index and signed magnitude per chain and step, each
    (B, 3, 3) (Identity and 0 past a chain's depth); mixing weights (B, 1 + 3), the original image's first."""
    kernel_ids, table, signed = _space_tables_on("augmix", AUGMIX_NUM_BINS, height, width, torch.device(device))
    m = _dirichlet_ones(batch, 2, generator, device)  # Beta(1, 1): m[:, 0] the original's weight
    w = _dirichlet_ones(batch, AUGMIX_WIDTH, generator, device) * m[:, 1:]
    shape = (batch, AUGMIX_WIDTH, AUGMIX_MAX_DEPTH)
    depth = torch.randint(1, AUGMIX_MAX_DEPTH + 1, shape[:2], generator=generator, device=device)
    picks = torch.randint(len(AUGMIX_OPS), shape, generator=generator, device=device)
    bins = torch.randint(severity, shape, generator=generator, device=device)
    u = torch.rand(shape, generator=generator, device=device)
    ops = kernel_ids[picks]
    magnitudes = _signed(table[ops, bins], ops, signed, u)
    live = torch.arange(AUGMIX_MAX_DEPTH, device=device) < depth[..., None]  # (B, 3, 3)
    ops = torch.where(live, ops, OP_INDEX["Identity"])
    return depth, ops, torch.where(live, magnitudes, 0.0), torch.cat([m[:, :1], w], dim=1)


def apply_augmix(x: torch.Tensor, ops: torch.Tensor, magnitudes: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Run the 3 chains of every image as one batch of 3B images (chain-major), then mix with `weights`."""
    b = x.shape[0]
    chains = x.repeat(AUGMIX_WIDTH, 1, 1, 1)  # (3B, C, H, W): chain i of image j at i * B + j
    flat_ops = ops.transpose(0, 1).reshape(AUGMIX_WIDTH * b, AUGMIX_MAX_DEPTH)
    flat_mags = magnitudes.transpose(0, 1).reshape(AUGMIX_WIDTH * b, AUGMIX_MAX_DEPTH)
    chains = apply_ops_in_turn(chains, flat_ops, flat_mags, interpolation="bilinear")
    chains = chains.view(AUGMIX_WIDTH, *x.shape)
    w = weights.to(x.dtype).t()[:, :, None, None, None]  # (1 + 3, B, 1, 1, 1)
    mix = x * w[0]
    for i in range(AUGMIX_WIDTH):
        mix.add_(chains[i] * w[1 + i])
    return mix.clamp_(0, 1)  # a convex mix of images in [0, 1]; the clamp only takes rounding off


@AUGMENTATIONS.register(
    "augmix",
    ops=AUGMIX_OPS,
    default_strength=3.0,
    strength_range=(1.0, float(AUGMIX_NUM_BINS)),
    strength_integer=True,
    doc="AugMix (3 chains of depth 1-3, alpha 1, all ops); `strength` is the severity, a whole number in 1..10",
)
def augmix(strength: float | None, fill: Fill) -> Augment:
    severity = int(3 if strength is None else strength)

    def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, _, h, w = x.shape
        _, ops, magnitudes, weights = draw_augmix(b, h, w, generator, x.device, severity)
        return apply_augmix(x, ops, magnitudes, weights)

    return augment
