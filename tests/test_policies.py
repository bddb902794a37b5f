"""Behaviour of the policies beyond the simple ones (trainables.augmentations): the paper's composites,
RandAugment, AutoAugment, AugMix and perspective, each checked against torchvision for the same draws (tables,
per-image ops, warps) and for its own contract."""

from __future__ import annotations

import subprocess
import sys

import factories
import pytest
import torch
import torch.nn.functional as F
from factories import gen
from torchvision.transforms import InterpolationMode
from torchvision.transforms.functional import _get_perspective_coeffs
from torchvision.transforms.v2 import AugMix, AutoAugment, AutoAugmentPolicy, RandAugment
from torchvision.transforms.v2 import functional as TF

from augworth.trainables.augmentations import (
    AUGMENTATIONS,
    KERNEL_OPS,
    augmentation_names,
    check_strength,
    create_augmentation,
    default_strength,
)
from augworth.trainables.augmentations.auto_augment import (
    AA_CIFAR10_POLICY,
    AA_OPS,
    AUGMIX_OPS,
    RA_OPS,
    apply_augmix,
    apply_ops_in_turn,
    draw_augmix,
    draw_autoaugment,
    draw_randaugment,
    space_tables,
)
from augworth.trainables.augmentations.perspective import apply_perspective, draw_perspective, perspective_coefficients
from augworth.trainables.augmentations.trivialaugment import apply_kernel_op

OLD = ["crop", "cutout", "flip", "none", "rotate", "trivialaugment"]
NEW = [
    "augmix",
    "autoaugment",
    "crop_flip",
    "cutout_crop_flip",
    "perspective",
    "randaugment",
    "randaugment_crop_flip",
    "trivialaugment_crop_flip",
]


def smooth_images(n: int, channels: int = 3, size: int = 16, seed: int = 0) -> torch.Tensor:
    return factories.smooth_images(n, channels, size, seed)  # this file's images are 16x16 by default


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
GEOMETRIC = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"}
IDENTITY = KERNEL_OPS.index("Identity")


def tv_op(transform: object, image: torch.Tensor, op: str, magnitude: float, interpolation: str) -> torch.Tensor:
    """torchvision's own mapping from (op, magnitude) to a functional call, on one image."""
    return transform._apply_image_or_video_transform(  # type: ignore[attr-defined]
        image,
        op,
        magnitude,
        interpolation=interpolation,
        fill=transform._fill,  # type: ignore[attr-defined]
    )


# -----------------------------------------------------------------------------
# Registry, contract, strengths


def built_in_names() -> list[str]:
    # a test earlier in the session (test_end_to_end) may have imported a plugin that registers more
    ours = "augworth.trainables."
    return [n for n in augmentation_names() if AUGMENTATIONS.get(n).factory.__module__.startswith(ours)]


def test_every_policy_is_registered() -> None:
    assert built_in_names() == sorted(OLD + NEW)


def test_importing_one_policy_module_first_registers_everything() -> None:
    # a submodule loads its package's __init__ first, which imports every built-in policy (timm's layout)
    code = ("import augworth.trainables.augmentations.perspective; "
            "from augworth.trainables.augmentations.core import augmentation_names as n; print(len(n()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert int(out) == len(OLD + NEW)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("size", [16, 32])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", NEW)
def test_contract(name: str, channels: int, size: int, device: str) -> None:
    x = smooth_images(16, channels, size, seed=size + channels).to(device)
    before = x.clone()
    augment = create_augmentation(name, fill=0.5)
    y = augment(x, gen(0, device))
    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
    assert y.min() >= 0 and y.max() <= 1
    assert torch.equal(x, before), "the input batch was modified in place"
    assert torch.equal(y, augment(x, gen(0, device))), "same generator seed, different output"
    assert not torch.equal(y, augment(x, gen(1, device))), "different seed, same output"
    assert torch.unique(y.flatten(1), dim=0).shape[0] > 8  # images get their own draws


def test_default_strengths() -> None:
    # the six older policies keep theirs: cell keys hash the resolved strength
    assert [default_strength(n, 32) for n in OLD] == [4.0, 16.0, None, None, 15.0, 1.0]
    assert default_strength("cutout", 28) == 14.0
    expected = {
        "augmix": 3.0,
        "autoaugment": 1.0,
        "crop_flip": 4.0,
        "cutout_crop_flip": 16.0,
        "perspective": 0.5,
        "randaugment": 9.0,
        "randaugment_crop_flip": 9.0,
        "trivialaugment_crop_flip": 1.0,
    }
    assert {n: default_strength(n, 32) for n in NEW} == expected
    assert default_strength("cutout_crop_flip", 28) == 14.0


@pytest.mark.parametrize(
    ("name", "strength"),
    [
        ("flip", 0),
        ("flip", 0.3),
        ("flip", 1),
        ("crop_flip", 0),
        ("crop_flip", 2),
        ("trivialaugment_crop_flip", 0.5),
        ("randaugment", 0),
        ("randaugment_crop_flip", 30),
        ("cutout_crop_flip", 8),
        ("perspective", 0),
        ("perspective", 1),
        ("autoaugment", 0.25),
        ("augmix", 1),
        ("augmix", 10),
    ],
)
def test_check_strength_accepts(name: str, strength: float) -> None:
    check_strength(name, strength)


# -----------------------------------------------------------------------------
# flip's strength and the composites


def test_flip_strength_is_the_probability() -> None:
    x = torch.rand(200, 3, 6, 6, generator=gen(1))
    assert torch.equal(create_augmentation("flip", 0)(x, gen(0)), x)
    assert torch.equal(create_augmentation("flip", 1)(x, gen(0)), x.flip(-1))
    # None is p = 0.5 with the very same draws as before flip took a strength
    assert torch.equal(create_augmentation("flip")(x, gen(0)), create_augmentation("flip", 0.5)(x, gen(0)))
    y = create_augmentation("flip", 0.2)(x, gen(0))
    flipped = (y == x.flip(-1)).flatten(1).all(1)
    assert 20 <= int(flipped.sum()) <= 60


@pytest.mark.parametrize(
    ("name", "strength", "first"),
    [
        ("crop_flip", 3, None),
        ("crop_flip", 0, None),
        ("trivialaugment_crop_flip", 0.5, "trivialaugment"),
        ("randaugment_crop_flip", 12, "randaugment"),
        ("cutout_crop_flip", 6, "cutout"),
    ],
)
def test_composite_is_its_parts_in_turn(name: str, strength: float, first: str | None) -> None:
    x = smooth_images(32, size=16, seed=3)
    y = create_augmentation(name, strength, fill=0.25)(x, gen(0))
    g = gen(0)
    z = x
    if first is not None:
        z = create_augmentation(first, strength, fill=0.25)(z, g)
    z = create_augmentation("crop", strength if first is None else 4)(z, g)
    z = create_augmentation("flip")(z, g)
    assert torch.equal(y, z)


def test_cutout_crop_flip_default_side_is_half_the_image() -> None:
    x = torch.rand(8, 3, 12, 12, generator=gen(2))
    assert torch.equal(
        create_augmentation("cutout_crop_flip", fill=0.5)(x, gen(0)),
        create_augmentation("cutout_crop_flip", 6, fill=0.5)(x, gen(0)),
    )


# -----------------------------------------------------------------------------
# Op tables against torchvision's


def assert_space_is(space: str, tv_space: dict, num_bins: int, height: int, width: int) -> None:
    kernel_ids, table, signed = space_tables(space, num_bins, height, width)
    assert [KERNEL_OPS[i] for i in kernel_ids] == list(tv_space)
    for op, (magnitudes_fn, is_signed) in tv_space.items():
        bins = magnitudes_fn(num_bins, height, width)
        expected = torch.zeros(num_bins) if bins is None else bins.float()
        assert torch.equal(table[KERNEL_OPS.index(op)], expected), op
        assert bool(signed[KERNEL_OPS.index(op)]) == is_signed, op


@pytest.mark.parametrize(("height", "width"), [(32, 32), (16, 16), (28, 20)])
def test_op_spaces_are_torchvisions(height: int, width: int) -> None:
    assert tuple(RandAugment._AUGMENTATION_SPACE) == RA_OPS
    assert tuple(AutoAugment._AUGMENTATION_SPACE) == AA_OPS
    assert tuple(AugMix._AUGMENTATION_SPACE) == AUGMIX_OPS
    assert_space_is("randaugment", RandAugment._AUGMENTATION_SPACE, 31, height, width)
    assert_space_is("autoaugment", AutoAugment._AUGMENTATION_SPACE, 10, height, width)
    assert_space_is("augmix", AugMix._AUGMENTATION_SPACE, 10, height, width)


def test_autoaugment_cifar10_policy_is_torchvisions() -> None:
    policy = AutoAugment(AutoAugmentPolicy.CIFAR10)._get_policies(AutoAugmentPolicy.CIFAR10)
    assert [tuple(sub) for sub in policy] == list(AA_CIFAR10_POLICY)


def test_invert_is_torchvisions() -> None:
    x = smooth_images(4, size=8)
    assert torch.equal(apply_kernel_op(x, "Invert", 0.0), TF.invert(x))
    assert torch.equal(apply_kernel_op(x[:, :1], "Invert", 0.0), TF.invert(x[:, :1]))


# -----------------------------------------------------------------------------
# RandAugment


def test_randaugment_draws_two_ops_per_image_uniformly_with_replacement() -> None:
    n, magnitude = 20_000, 9
    ops, magnitudes = draw_randaugment(n, 32, 32, gen(0), magnitude=magnitude)
    assert ops.shape == magnitudes.shape == (n, 2)
    ra_ids = torch.tensor([KERNEL_OPS.index(op) for op in RA_OPS])
    for k in range(2):
        counts = torch.bincount(ops[:, k], minlength=len(KERNEL_OPS))[ra_ids].float()
        assert int(counts.sum()) == n  # only RandAugment's ops
        assert ((counts / (n / len(RA_OPS)) - 1).abs() < 0.12).all(), counts  # ~4 sd
    same = float((ops[:, 0] == ops[:, 1]).float().mean())
    assert abs(same - 1 / len(RA_OPS)) < 0.01  # independent draws, so repeats happen
    # every magnitude is bin `magnitude` of its op, negated for about half of the signed ops
    _, table, signed = space_tables("randaugment", 31, 32, 32)
    assert torch.equal(magnitudes.abs(), table[ops, magnitude].abs())
    drawn_signed = signed[ops] & (table[ops, magnitude] != 0)
    assert abs(float((magnitudes < 0)[drawn_signed].float().mean()) - 0.5) < 0.02
    assert not (magnitudes < 0)[~signed[ops]].any()


@pytest.mark.parametrize("channels", [3, 1])
def test_randaugment_applies_both_ops_like_torchvision(channels: int) -> None:
    tv = RandAugment()
    x = smooth_images(64, channels, size=16, seed=5)
    ops, magnitudes = draw_randaugment(64, 16, 16, gen(2), magnitude=20)
    y = apply_ops_in_turn(x, ops, magnitudes)
    for i in range(len(x)):
        ref = x[i]
        for k in range(2):
            ref = tv_op(tv, ref, KERNEL_OPS[int(ops[i, k])], float(magnitudes[i, k]), "nearest")
        # nearest-neighbour picks may differ where a sample lands on a pixel border
        assert float((y[i] - ref).abs().mean()) < 0.02, (i, ops[i].tolist(), magnitudes[i].tolist())


# -----------------------------------------------------------------------------
# AutoAugment


def test_autoaugment_draws_sub_policies_and_applies_ops_with_their_probability() -> None:
    n = 50_000
    sub, applied, ops, magnitudes = draw_autoaugment(n, 32, 32, gen(0))
    counts = torch.bincount(sub, minlength=25).float()
    assert ((counts / (n / 25) - 1).abs() < 0.1).all(), counts
    probs = torch.tensor([[p for _, p, _ in s] for s in AA_CIFAR10_POLICY])
    policy_ops = torch.tensor([[KERNEL_OPS.index(op) for op, _, _ in s] for s in AA_CIFAR10_POLICY])
    rate = torch.zeros(25, 2).index_add_(0, sub, applied.float()) / counts[:, None]
    assert ((rate - probs).abs() < 0.05).all(), rate
    assert torch.equal(ops[applied], policy_ops[sub][applied])
    assert (ops[~applied] == IDENTITY).all() and (magnitudes[~applied] == 0).all()


def test_autoaugment_strength_scales_the_magnitudes() -> None:
    sub, applied, _, full = draw_autoaugment(4000, 32, 32, gen(0))
    sub_half, applied_half, ops, half = draw_autoaugment(4000, 32, 32, gen(0), strength=0.5)
    assert torch.equal(sub, sub_half) and torch.equal(applied, applied_half)
    posterize, solarize = ops == KERNEL_OPS.index("Posterize"), ops == KERNEL_OPS.index("Solarize")
    linear = ~(posterize | solarize)
    assert torch.allclose(half[linear], 0.5 * full[linear])
    assert torch.equal(half[posterize], torch.round(8 - 0.5 * (8 - full[posterize])))
    assert torch.allclose(half[solarize], 1 - 0.5 * (1 - full[solarize]))


@pytest.mark.parametrize("channels", [3, 1])
def test_autoaugment_applies_the_sub_policy_like_torchvision(channels: int) -> None:
    tv = AutoAugment(AutoAugmentPolicy.CIFAR10)
    x = smooth_images(64, channels, size=16, seed=6)
    _, applied, ops, magnitudes = draw_autoaugment(64, 16, 16, gen(4))
    y = apply_ops_in_turn(x, ops, magnitudes)
    for i in range(len(x)):
        ref = x[i]
        for k in range(2):
            if applied[i, k]:
                ref = tv_op(tv, ref, KERNEL_OPS[int(ops[i, k])], float(magnitudes[i, k]), "nearest")
        assert float((y[i] - ref).abs().mean()) < 0.02, (i, ops[i].tolist(), magnitudes[i].tolist())


# -----------------------------------------------------------------------------
# AugMix


def test_augmix_draws() -> None:
    n, severity = 20_000, 4
    depth, ops, magnitudes, weights = draw_augmix(n, 32, 32, gen(0), severity=severity)
    assert depth.shape == (n, 3) and ops.shape == magnitudes.shape == (n, 3, 3) and weights.shape == (n, 4)
    # chain depths uniform in 1..3; steps past a chain's depth are Identity
    depth_counts = torch.bincount(depth.flatten(), minlength=4)[1:].float()
    assert ((depth_counts / (3 * n / 3) - 1).abs() < 0.05).all(), depth_counts
    past = torch.arange(3) >= depth[..., None]
    assert (ops[past] == IDENTITY).all() and (magnitudes[past] == 0).all()
    # live steps: AugMix's 13 ops uniformly, at a bin below `severity`
    augmix_ids = torch.tensor([KERNEL_OPS.index(op) for op in AUGMIX_OPS])
    live_ops = ops[~past]
    counts = torch.bincount(live_ops, minlength=len(KERNEL_OPS))[augmix_ids].float()
    assert int(counts.sum()) == live_ops.numel()
    assert ((counts / (live_ops.numel() / 13) - 1).abs() < 0.1).all(), counts
    _, table, _ = space_tables("augmix", 10, 32, 32)
    live_mags = magnitudes[~past].abs()
    assert (live_mags[:, None] == table[live_ops, :severity]).any(1).all()
    rotate = KERNEL_OPS.index("Rotate")
    assert set(live_mags[live_ops == rotate].tolist()) == set(table[rotate, :severity].tolist())
    # weights: a convex mix; the original's weight ~ Beta(1, 1) = Uniform(0, 1), the chains' exchangeable
    assert (weights >= 0).all() and torch.allclose(weights.sum(1), torch.ones(n))
    original = weights[:, 0]
    assert abs(float(original.mean()) - 0.5) < 0.01 and abs(float(original.var()) - 1 / 12) < 0.005
    hist = torch.histc(original, bins=10, min=0, max=1)
    assert ((hist / (n / 10) - 1).abs() < 0.1).all(), hist
    chain_means = weights[:, 1:].mean(0)
    assert torch.allclose(chain_means, torch.full((3,), 0.5 / 3), atol=0.01), chain_means


def test_augmix_with_identity_chains_returns_the_input() -> None:
    x = smooth_images(32, size=16, seed=8)
    _, ops, magnitudes, weights = draw_augmix(32, 16, 16, gen(1))
    y = apply_augmix(x, torch.full_like(ops, IDENTITY), torch.zeros_like(magnitudes), weights)
    assert torch.allclose(y, x, atol=1e-6)


def test_augmix_output_is_the_convex_mix_of_its_chains() -> None:
    # and each chain is torchvision's ops in turn, bilinear
    tv = AugMix()
    x = smooth_images(24, size=16, seed=9)
    _, ops, magnitudes, weights = draw_augmix(24, 16, 16, gen(3), severity=10)
    y = apply_augmix(x, ops, magnitudes, weights)
    for i in range(len(x)):
        ref = weights[i, 0] * x[i]
        for c in range(3):
            chain = x[i]
            for s in range(3):
                op = KERNEL_OPS[int(ops[i, c, s])]
                if op != "Identity":
                    chain = tv_op(tv, chain, op, float(magnitudes[i, c, s]), "bilinear")
            ref = ref + weights[i, 1 + c] * chain
        assert float((y[i] - ref).abs().mean()) < 2e-3, (i, ops[i].tolist())


# -----------------------------------------------------------------------------
# Perspective


def test_perspective_draws_end_points_as_torchvision_does() -> None:
    h, w, scale, n = 12, 20, 0.5, 4000
    apply, end = draw_perspective(n, h, w, gen(0), distortion_scale=scale)
    assert abs(float(apply.float().mean()) - 0.5) < 0.03
    bound_w, bound_h = int(scale * (w // 2)) + 1, int(scale * (h // 2)) + 1
    near_x = [(0, bound_w)] * 4
    ranges_x = [near_x[0], (w - bound_w, w), (w - bound_w, w), near_x[0]]
    ranges_y = [(0, bound_h), (0, bound_h), (h - bound_h, h), (h - bound_h, h)]
    for corner in range(4):
        for axis, (lo, hi) in ((0, ranges_x[corner]), (1, ranges_y[corner])):
            values = end[:, corner, axis]
            assert set(values.unique().tolist()) == set(range(lo, hi)), (corner, axis)


def test_perspective_coefficients_are_torchvisions() -> None:
    h, w = 16, 24
    _, end = draw_perspective(32, h, w, gen(1), distortion_scale=0.9)
    coefficients, ok = perspective_coefficients(end, h, w)
    assert ok.all()
    start = [[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]]
    for i in range(len(end)):
        expected = torch.tensor(_get_perspective_coeffs(start, end[i].tolist()))
        assert torch.allclose(coefficients[i], expected, rtol=1e-5, atol=1e-5), i


def test_degenerate_perspective_falls_back_to_the_identity() -> None:
    end = torch.tensor([[[8, 8], [8, 8], [8, 8], [8, 8]]])
    coefficients, ok = perspective_coefficients(end, 16, 16)
    assert not ok.any()
    assert torch.equal(coefficients[0], torch.tensor([1.0, 0, 0, 0, 1, 0, 0, 0]))


@pytest.mark.parametrize("channels", [3, 1])
def test_perspective_warp_is_torchvisions(channels: int) -> None:
    h, w = 16, 20
    x = smooth_images(12, channels, size=16, seed=10)[..., :h, :]
    x = F.pad(x, (0, w - 16))  # not square, to catch swapped axes
    x[..., 16:] = torch.rand(12, channels, h, w - 16, generator=gen(11))
    _, end = draw_perspective(12, h, w, gen(2), distortion_scale=0.8)
    coefficients, _ = perspective_coefficients(end, h, w)
    y = apply_perspective(x, coefficients)
    start = [[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]]
    for i in range(len(x)):
        ref = TF.perspective(x[i], start, end[i].tolist(), interpolation=InterpolationMode.BILINEAR, fill=0)
        # torchvision leaves NaN where the homography's denominator is 0 (strong distortions); we leave 0
        assert torch.equal(y[i][ref.isnan()], torch.zeros(int(ref.isnan().sum())))
        assert float((y[i] - ref.nan_to_num(0.0)).abs().max()) < 1e-4, i
    assert not y.isnan().any()


def test_strong_perspective_stays_in_range() -> None:
    x = smooth_images(256, size=16, seed=13)
    y = create_augmentation("perspective", 1.0)(x, gen(0))
    assert torch.isfinite(y).all() and y.min() >= 0 and y.max() <= 1


def test_perspective_warps_about_half_and_leaves_the_rest() -> None:
    x = smooth_images(200, size=16, seed=12)
    y = create_augmentation("perspective")(x, gen(0))
    apply, _ = draw_perspective(200, 16, 16, gen(0))
    same = (y == x).flatten(1).all(1)
    assert torch.equal(same, ~apply)
    assert 70 <= int(apply.sum()) <= 130
    assert torch.equal(create_augmentation("perspective", 0)(x, gen(0)), x)
