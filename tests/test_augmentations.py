"""Behaviour of trainables.augmentations: the simple batched policies, their per-image draws, and TrivialAugmentWide
checked against torchvision itself (op set, magnitude bins, and each op's output at a pinned magnitude)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from factories import gen, smooth_images
from torchvision.transforms.v2 import TrivialAugmentWide

from augworth.trainables.augmentations import (
    TA_OPS,
    augmentation_names,
    check_strength,
    create_augmentation,
    default_strength,
)
from augworth.trainables.augmentations.trivialaugment import (
    apply_kernel_op,
    apply_kernel_ops,
    draw_trivialaugment,
    ta_tables,
)
from augworth.trainables.registry import UnknownNameError

POLICIES = ["crop", "cutout", "flip", "none", "rotate", "trivialaugment"]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
GEOMETRIC = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"}


def identical_images(n: int, size: int = 16) -> torch.Tensor:
    return torch.rand(1, 3, size, size, generator=gen(7)).expand(n, -1, -1, -1).contiguous()


def n_distinct(y: torch.Tensor) -> int:
    return torch.unique(y.flatten(1), dim=0).shape[0]


# -----------------------------------------------------------------------------
# Registry and contract


def test_policy_names() -> None:
    assert set(POLICIES) <= set(augmentation_names())  # the rest are tested in test_policies


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownNameError) as err:
        create_augmentation("nope")
    for name in POLICIES:
        assert name in str(err.value)
    with pytest.raises(UnknownNameError):
        check_strength("nope", None)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", POLICIES)
def test_contract(name: str, channels: int, device: str) -> None:
    x = torch.rand(32, channels, 16, 16, generator=gen(1)).to(device)
    before = x.clone()
    augment = create_augmentation(name, fill=0.5)
    y = augment(x, gen(0, device))
    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
    assert y.min() >= 0 and y.max() <= 1
    assert torch.equal(x, before), "the input batch was modified in place"
    assert torch.equal(y, augment(x, gen(0, device))), "same generator seed, different output"
    if name == "none":
        assert torch.equal(y, x)
    else:
        assert not torch.equal(y, augment(x, gen(1, device))), "different seed, same output"


def test_rejects_batches_that_are_not_float_images() -> None:
    augment = create_augmentation("flip")
    with pytest.raises(ValueError, match="float batch"):
        augment(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), gen(0))
    with pytest.raises(ValueError, match="float batch"):
        augment(torch.zeros(3, 8, 8), gen(0))


# -----------------------------------------------------------------------------
# Strengths


@pytest.mark.parametrize(
    ("name", "strength"),
    [
        ("crop", -1),
        ("crop", 2.5),
        ("crop", True),
        ("rotate", -5.0),
        ("rotate", 181),
        ("rotate", math.nan),
        ("cutout", -2),
        ("cutout", 3.5),
        ("trivialaugment", 0.0),
        ("trivialaugment", -0.1),
        ("trivialaugment", 1.5),
        ("none", 1.0),
        ("flip", 1.5),
        ("flip", -0.1),
        ("crop_flip", -1),
        ("crop_flip", 1.5),
        ("trivialaugment_crop_flip", 0.0),
        ("trivialaugment_crop_flip", 1.1),
        ("randaugment", 31),
        ("randaugment", -1),
        ("randaugment_crop_flip", 9.5),
        ("cutout_crop_flip", 3.5),
        ("perspective", -0.1),
        ("perspective", 1.01),
        ("autoaugment", 0.0),
        ("autoaugment", 2.0),
        ("augmix", 0),
        ("augmix", 11),
        ("augmix", 2.5),
    ],
)
def test_check_strength_rejects(name: str, strength: float) -> None:
    with pytest.raises(ValueError, match=repr(name)):
        check_strength(name, strength)
    with pytest.raises(ValueError, match=repr(name)):
        create_augmentation(name, strength)


@pytest.mark.parametrize(
    ("name", "strength"),
    [
        ("crop", 0),
        ("crop", 4.0),
        ("rotate", 0),
        ("rotate", 12.5),
        ("rotate", 180),
        ("cutout", 16),
        ("trivialaugment", 1),
        ("trivialaugment", 0.01),
        ("none", None),
        ("flip", None),
    ],
)
def test_check_strength_accepts(name: str, strength: float | None) -> None:
    check_strength(name, strength)


def test_default_strengths() -> None:
    assert default_strength("crop", 32) == 4.0
    assert default_strength("rotate", 32) == 15.0
    assert default_strength("cutout", 32) == 16.0
    assert default_strength("cutout", 28) == 14.0
    assert default_strength("trivialaugment", 32) == 1.0
    assert default_strength("none", 32) is None
    assert default_strength("flip", 32) is None


@pytest.mark.parametrize("name", ["crop", "rotate", "cutout"])
@pytest.mark.parametrize("strength", [0, 0.0])
def test_strength_zero_is_identity(name: str, strength: float) -> None:
    x = torch.rand(16, 3, 12, 12, generator=gen(2))
    assert torch.equal(create_augmentation(name, strength, fill=0.5)(x, gen(0)), x)


def test_fill_may_be_a_tensor() -> None:
    x = torch.rand(8, 3, 8, 8, generator=gen(6))
    y = create_augmentation("cutout", 8, fill=torch.tensor([0.25, 0.5, 0.75]))(x, gen(0))
    # a side-8 square in an 8x8 image covers pixel (3, 3) wherever its centre falls
    assert torch.equal(y[:, :, 3, 3], torch.tensor([0.25, 0.5, 0.75]).expand(8, 3))


def test_fill_is_checked() -> None:
    with pytest.raises(ValueError, match="fill"):
        create_augmentation("cutout", 4, fill=1.5)
    augment = create_augmentation("cutout", 4, fill=(0.1, 0.2))
    with pytest.raises(ValueError, match="fill"):
        augment(torch.rand(2, 3, 8, 8), gen(0))


# -----------------------------------------------------------------------------
# Per-image draws and what each simple policy does


def test_flip_draws_per_image() -> None:
    x = identical_images(64)
    y = create_augmentation("flip")(x, gen(0))
    flipped = (y == x.flip(-1)).flatten(1).all(1)
    kept = (y == x).flatten(1).all(1)
    assert (flipped ^ kept).all()
    assert 16 <= int(flipped.sum()) <= 48


@pytest.mark.parametrize(
    ("name", "at_least"), [("crop", 30), ("rotate", 60), ("cutout", 40), ("trivialaugment", 35)]
)
def test_identical_images_get_different_draws(name: str, at_least: int) -> None:
    y = create_augmentation(name, fill=0.5)(identical_images(64), gen(0))
    assert n_distinct(y) >= at_least


def test_crop_is_a_shift_within_the_padding() -> None:
    pad, h, w = 2, 6, 7  # not square, to catch swapped axes
    x = torch.rand(200, 3, h, w, generator=gen(3))
    y = create_augmentation("crop", pad)(x, gen(0))
    padded = F.pad(x, (pad, pad, pad, pad))
    seen = set()
    for i in range(len(x)):
        matches = [
            (dy, dx)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            if torch.equal(y[i], padded[i, :, dy : dy + h, dx : dx + w])
        ]
        assert len(matches) == 1, f"image {i} is not one shift of its input"
        seen.add(matches[0])
    assert len(seen) == (2 * pad + 1) ** 2  # every offset in [0, 2p] x [0, 2p] is drawn


def test_cutout_paints_one_clipped_square_with_the_fill() -> None:
    side, size, fill = 5, 12, (0.25, 0.5, 0.75)
    x = torch.rand(300, 3, size, size, generator=gen(4))
    y = create_augmentation("cutout", side, fill=fill)(x, gen(0))
    changed = (y != x).any(dim=1)  # (B, H, W)
    extents: dict[str, set[tuple[int, int]]] = {"rows": set(), "cols": set()}  # (first index, length)
    for i in range(len(x)):
        rows = changed[i].any(dim=1).nonzero().flatten()
        cols = changed[i].any(dim=0).nonzero().flatten()
        # one rectangle: contiguous rows and columns, every pixel inside changed
        assert rows.numel() > 0
        assert int(rows.max() - rows.min()) + 1 == rows.numel()
        assert int(cols.max() - cols.min()) + 1 == cols.numel()
        assert int(changed[i].sum()) == rows.numel() * cols.numel()
        # of side `side`, shorter only where it meets a border
        for axis, index in (("rows", rows), ("cols", cols)):
            assert index.numel() <= side
            if index.numel() < side:
                assert index.min() == 0 or index.max() == size - 1
            extents[axis].add((int(index.min()), index.numel()))
        # the region holds the fill, the rest is untouched
        inside = y[i][:, changed[i]]
        assert torch.equal(inside, torch.tensor(fill).view(3, 1).expand_as(inside))
        assert torch.equal(y[i][:, ~changed[i]], x[i][:, ~changed[i]])
    # The centre is uniform over the whole image: every unclipped position occurs, and so do centres on
    # the first and the last pixel, which leave side - side // 2 = 3 rows (columns) of the square.
    for axis in ("rows", "cols"):
        assert {start for start, n in extents[axis] if n == side} == set(range(size - side + 1)), axis
        assert (0, 3) in extents[axis] and (size - 3, 3) in extents[axis], axis


def test_cutout_default_side_is_half_the_image() -> None:
    x = torch.rand(100, 1, 16, 16, generator=gen(5))
    y = create_augmentation("cutout", fill=0.5)(x, gen(0))
    changed = (y != x).any(dim=1)
    rows = changed.any(dim=2).sum(dim=1)  # (B,) rows touched per image
    assert rows.max() == 8 and (rows <= 8).all()


# -----------------------------------------------------------------------------
# TrivialAugmentWide against torchvision

TV = TrivialAugmentWide()


def torchvision_op(image: torch.Tensor, op: str, magnitude: float) -> torch.Tensor:
    """torchvision's own mapping from (op, magnitude) to a functional call, on one image."""
    return TV._apply_image_or_video_transform(
        image, op, magnitude, interpolation=TV.interpolation, fill=TV._fill
    )


def test_ta_op_set_is_torchvisions() -> None:
    assert tuple(TrivialAugmentWide._AUGMENTATION_SPACE) == TA_OPS


@pytest.mark.parametrize(("height", "width"), [(32, 32), (8, 8), (28, 20)])
def test_ta_magnitude_bins_are_torchvisions(height: int, width: int) -> None:
    table, signed = ta_tables(height, width)
    for i, (op, (magnitudes_fn, is_signed)) in enumerate(TrivialAugmentWide._AUGMENTATION_SPACE.items()):
        bins = magnitudes_fn(31, height, width)
        expected = torch.zeros(31) if bins is None else bins.float()
        assert torch.equal(table[i], expected), op
        assert bool(signed[i]) == is_signed, op


def test_ta_draws_ops_bins_and_signs_uniformly() -> None:
    n = 20_000
    ops, bins, magnitudes = draw_trivialaugment(n, 8, 8, gen(0))
    op_counts = torch.bincount(ops, minlength=len(TA_OPS)).float()
    bin_counts = torch.bincount(bins, minlength=31).float()
    assert len(op_counts) == len(TA_OPS) and len(bin_counts) == 31
    assert ((op_counts / (n / len(TA_OPS)) - 1).abs() < 0.1).all(), op_counts  # ~4 sd
    assert ((bin_counts / (n / 31) - 1).abs() < 0.15).all(), bin_counts  # ~4 sd
    # each magnitude is its bin's value, negated for about half of the signed ops' draws
    table, signed = ta_tables(8, 8)
    assert torch.equal(magnitudes.abs(), table[ops, bins].abs())
    drawn_signed = signed[ops] & (table[ops, bins] != 0)
    negative = (magnitudes < 0)[drawn_signed].float().mean()
    assert abs(float(negative) - 0.5) < 0.02
    assert not (magnitudes < 0)[~signed[ops]].any()


def test_ta_strength_scales_the_magnitudes() -> None:
    ops, bins, full = draw_trivialaugment(5000, 32, 32, gen(0))
    ops_half, bins_half, half = draw_trivialaugment(5000, 32, 32, gen(0), strength=0.5)
    assert torch.equal(ops, ops_half) and torch.equal(bins, bins_half)
    posterize, solarize = ops == TA_OPS.index("Posterize"), ops == TA_OPS.index("Solarize")
    linear = ~(posterize | solarize)
    assert torch.allclose(half[linear], 0.5 * full[linear])
    assert torch.equal(half[posterize], torch.round(8 - 0.5 * (8 - full[posterize])))
    assert torch.allclose(half[solarize], 1 - 0.5 * (1 - full[solarize]))


def test_ta_small_strength_approaches_identity() -> None:
    x = smooth_images(512, size=16)
    ops, _, magnitudes = draw_trivialaugment(512, 16, 16, gen(0), strength=1e-3)
    y = apply_kernel_ops(x, ops, magnitudes)
    # AutoContrast and Equalize have no magnitude to scale
    scaled = torch.tensor([TA_OPS[k] not in {"AutoContrast", "Equalize"} for k in ops])
    diff = (y - x).abs().flatten(1).mean(1)
    assert (diff[scaled] < 0.01).all()


def magnitudes_to_test(op: str) -> list[float]:
    magnitudes_fn, is_signed = TrivialAugmentWide._AUGMENTATION_SPACE[op]
    bins = magnitudes_fn(31, 32, 32)
    if bins is None:
        return [0.0]
    values = sorted({float(bins[i]) for i in (0, 3, 10, 17, 25, 30)})
    return values + [-v for v in values if v] if is_signed else values


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("op", list(TrivialAugmentWide._AUGMENTATION_SPACE))
def test_ta_op_matches_torchvision_at_each_magnitude(op: str, channels: int) -> None:
    magnitudes = magnitudes_to_test(op)
    x = smooth_images(len(magnitudes), channels=channels, seed=len(op))
    x[0] = torch.linspace(0, 1, 32 * 32).view(1, 32, 32)  # a ramp with exact 0 and 1: thresholds' edge cases
    # one batch, a different magnitude per image: checks the per-sample path, not just a scalar one
    ours = apply_kernel_op(x, op, torch.tensor(magnitudes))
    for i, m in enumerate(magnitudes):
        ref = torchvision_op(x[i], op, m)
        diff = (ours[i] - ref).abs()
        if op in GEOMETRIC:  # nearest-neighbour picks may differ where a sample lands on a pixel border
            assert float(diff.mean()) < 0.02, (op, m)
        else:
            assert float(diff.max()) < 1e-5, (op, m)


def test_ta_mixed_batch_matches_torchvision_per_image() -> None:
    # grouping by op and scattering back must put every image back in its own place
    x = smooth_images(96, size=16, seed=9)
    ops, _, magnitudes = draw_trivialaugment(96, 16, 16, gen(3))
    y = apply_kernel_ops(x, ops, magnitudes)
    for i in range(len(x)):
        op = TA_OPS[int(ops[i])]
        ref = torchvision_op(x[i], op, float(magnitudes[i]))
        assert float((y[i] - ref).abs().mean()) < 0.02, (i, op, float(magnitudes[i]))


# -----------------------------------------------------------------------------
# Benchmark smoke run


def test_bench_smoke(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))  # bench/ is not installed
    from bench.augment import main

    threads = torch.get_num_threads()
    ratio = main(["--smoke"])
    out = capsys.readouterr().out
    assert "ratio" in out and ratio > 0
    assert torch.get_num_threads() == threads  # the benchmark gives the thread setting back
