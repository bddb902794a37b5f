"""Model registry (architectures, parameter counts, metadata, FLOPs) and the flip-invariance wrappers."""

from __future__ import annotations

import inspect
import time

import pytest
import torch
from torch import nn

from augworth.trainables.invariance import INVARIANCES, flip_score, orbit_canonical, wrap_invariance
from augworth.trainables.models import MODELS, create_model, flops_per_image, init_seeded, param_count
from augworth.trainables.registry import UnknownNameError

# ----- independent parameter counts (closed forms, not the modules) -----------------------------------------


def resnet18_params(w: int, c: int = 3, k: int = 10) -> int:
    total = 9 * c * w + 2 * w  # stem conv + BN
    c_in = w
    for c_out in (w, 2 * w, 4 * w, 8 * w):
        total += 9 * c_in * c_out + 3 * 9 * c_out * c_out + 4 * 2 * c_out  # 4 convs, 4 BNs
        if c_in != c_out:
            total += c_in * c_out + 2 * c_out  # 1x1 shortcut + BN
        c_in = c_out
    return total + 8 * w * k + k


def vgg13_params(w: int, c: int = 3, k: int = 10) -> int:
    channels = [c, w, w, 2 * w, 2 * w, 4 * w, 4 * w, 8 * w, 8 * w, 8 * w, 8 * w]
    convs = sum(9 * a * b + 2 * b for a, b in zip(channels, channels[1:], strict=False))  # bias-free conv + BN
    return convs + 8 * w * k + k


def convmixer_params(d: int, depth: int, kernel: int, patch: int, c: int = 3, k: int = 10) -> int:
    stem = c * d * patch**2 + d + 2 * d
    block = (d * kernel**2 + d) + 2 * d + (d * d + d) + 2 * d
    return stem + depth * block + d * k + k


def test_parameter_counts_match_closed_forms():
    assert param_count(create_model("resnet18", in_channels=3, num_classes=10)) == 11_173_962  # the usual 11.17M
    assert resnet18_params(64) == 11_173_962
    for w in (4, 16):
        assert param_count(create_model("resnet18", width=w, in_channels=3, num_classes=10)) == resnet18_params(w)
    with torch.device("meta"):  # width 256 (~178M parameters) without allocating them
        wide = create_model("resnet18", width=256, in_channels=3, num_classes=10)
    assert param_count(wide) == resnet18_params(256)

    assert param_count(create_model("vgg13", in_channels=3, num_classes=10)) == vgg13_params(64) == 9_413_066
    assert param_count(create_model("vgg13", width=8, in_channels=1, num_classes=7)) == vgg13_params(8, 1, 7)

    # ConvMixer-256/16, kernel 7, patch 1: 1.28M (the 0.59M CIFAR-10 model is the shallower 256/8 with kernel 5)
    assert param_count(create_model("convmixer", in_channels=3, num_classes=10)) == convmixer_params(256, 16, 7, 1)
    assert convmixer_params(256, 16, 7, 1) == 1_277_962
    small = MODELS.get("convmixer").factory(width=256, depth=8, kernel_size=5, patch_size=2)
    assert param_count(small) == convmixer_params(256, 8, 5, 2)


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize(("channels", "side"), [(3, 32), (1, 16), (3, 8)])
def test_every_model_forwards_small_and_cifar_images(name, channels, side):
    model = create_model(name, width=4, in_channels=channels, num_classes=7).eval()
    with torch.no_grad():
        assert model(torch.randn(2, channels, side, side)).shape == (2, 7)
        x = torch.randn(2, channels, side, side).contiguous(memory_format=torch.channels_last)
        assert model(x).shape == (2, 7)


def test_vgg13_is_the_standard_five_pool_network_on_32x32():
    model = create_model("vgg13", width=4, in_channels=3, num_classes=10).eval()
    pools = [m for m in model if isinstance(m, nn.MaxPool2d)]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(pools) == 5 and len(convs) == 10
    features = nn.Sequential(*list(model)[:-3])  # up to the global pool
    assert features(torch.randn(1, 3, 32, 32)).shape == (1, 32, 1, 1)  # 32 / 2**5 = 1: the pool is a no-op
    assert features(torch.randn(1, 3, 16, 16)).shape == (1, 32, 1, 1)  # ceil-mode pools keep 1x1


def test_every_model_has_metadata_and_the_factory_default_width():
    for name in MODELS:
        entry = MODELS.get(name)
        assert entry.meta["default_width"] == inspect.signature(entry.factory).parameters["width"].default
        assert entry.meta["gpu_images_per_second"] > 0 and entry.meta["doc"]
    assert {n: MODELS.get(n).meta["default_width"] for n in MODELS} == {
        "convmixer": 256, "resnet18": 64, "small_cnn": 16, "vgg13": 64}


@pytest.mark.parametrize("name", ["vgg13", "convmixer"])
def test_init_seeded_is_a_function_of_the_seed_alone(name):
    def weights(seed: int, make_seed: int) -> dict:
        torch.manual_seed(make_seed)  # the construction-time init must not matter
        return init_seeded(create_model(name, width=4, in_channels=3, num_classes=10), seed).state_dict()

    a, b, c = weights(1, 0), weights(1, 99), weights(2, 0)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_flops_per_image_grow_quadratically_with_width_and_are_fast():
    start = time.perf_counter()
    flops_256 = flops_per_image.__wrapped__("resnet18", 256, 32)  # uncached
    assert time.perf_counter() - start < 1.0
    flops_64, flops_128 = flops_per_image("resnet18", 64, 32), flops_per_image("resnet18", 128, 32)
    assert 3.9 < flops_128 / flops_64 < 4.05 and 15.5 < flops_256 / flops_64 < 16.1
    assert 1.0e9 < flops_64 < 1.3e9  # ~0.56 GMACs for CIFAR ResNet-18
    assert flops_per_image("resnet18", None, 32) == flops_64  # None: the default width
    assert 3.9 < flops_per_image("resnet18", 64, 32) / flops_per_image("resnet18", 64, 16) < 4.1  # pixels
    assert flops_per_image("vgg13", 64, 16, 1) > 0 and flops_per_image("convmixer", 256, 32) > flops_64


# ----- invariance wrappers ------------------------------------------------------------------------------------


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit-for-bit equality (torch.equal treats -0.0 and 0.0 as equal)."""
    return a.shape == b.shape and torch.equal(a.view(torch.int32), b.view(torch.int32))


def hard_images(channels: int = 3, side: int = 8) -> torch.Tensor:
    """Random images and the adversarial cases for orbit selection, (N, C, side, side)."""
    gen = torch.Generator().manual_seed(0)
    random = torch.randn(5, channels, side, side, generator=gen)
    half = torch.rand(channels, side, side // 2, generator=gen)
    symmetric = torch.cat([half, half.flip(-1)], -1)
    # score exactly 0 but not symmetric: symmetric rows plus one row whose pair differences (1, -1, -1, 1)
    # cancel under the pair weights (3.5, 2.5, 1.5, 0.5)
    tie = symmetric.clone()
    tie[0, 2] = torch.tensor([0.0, 1, 1, 0, 1, 0, 0, 1])
    constant = torch.full((channels, side, side), 0.5)
    zeros = torch.zeros(channels, side, side)
    signed_zeros = zeros.clone()
    signed_zeros[..., 0] = -0.0  # compares equal to its flip, differs in bits
    images = torch.stack([symmetric, tie, constant, zeros, signed_zeros, -tie])
    return torch.cat([random, images])


def test_hard_images_cover_the_tie_cases():
    x = hard_images()
    score = flip_score(x)
    assert score[6] == 0 and not torch.equal(x[6], x[6].flip(-1))  # the non-symmetric tie
    assert (score[5:] == 0).all() and (score[:5] != 0).all()
    assert torch.equal(flip_score(x.flip(-1)), -score)


@pytest.mark.parametrize("channels_last", [False, True])
def test_orbit_canonical_is_identical_for_x_and_its_flip(channels_last):
    x = hard_images()
    x = torch.cat([x, torch.randn(64, 3, 8, 8)])
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    c = orbit_canonical(x)
    assert same_bits(c, orbit_canonical(x.flip(-1)))
    assert all(torch.equal(ci, xi) or torch.equal(ci, xi.flip(-1)) for ci, xi in zip(c, x, strict=True))
    assert (flip_score(c) >= 0).all()
    kept = (c == x).flatten(1).all(1)
    assert kept[7:].any() and not kept[7:].all()  # random images go both ways


def small_model() -> nn.Module:
    return init_seeded(create_model("small_cnn", width=4, in_channels=3, num_classes=5), 0)


@pytest.mark.parametrize("name", ["average", "orbit_select"])
@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_wrappers_are_exactly_flip_invariant(name, train, channels_last):
    model = wrap_invariance(name, small_model()).train(train)
    x = hard_images()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        out = model(x)
        assert same_bits(out, model(x.flip(-1)))
        some = x.clone()
        some[::2] = some[::2].flip(-1)  # flip only some images of the batch
        assert same_bits(out, model(some))
    assert out.shape == (len(x), 5) and out.isfinite().all()


def test_average_is_the_mean_of_the_two_forwards_without_batchnorm():
    inner = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(6, 4))
    model = wrap_invariance("average", inner)
    x = torch.randn(9, 3, 8, 8)
    with torch.no_grad():
        expected = (inner(x) + inner(x.flip(-1))) / 2
        assert torch.allclose(model(x), expected, atol=1e-6, rtol=1e-5)
        assert not torch.allclose(inner(x), expected, atol=1e-3)  # the inner model is not invariant itself


def test_wrappers_keep_parameters_state_dict_and_reject_unknown_names():
    inner = small_model()
    assert wrap_invariance("none", inner) is inner
    for name in ("average", "orbit_select", "shift_average", "center_of_mass"):
        wrapped = wrap_invariance(name, inner)
        assert param_count(wrapped) == param_count(inner)
        assert list(wrapped.state_dict()) == [f"model.{k}" for k in inner.state_dict()]
    assert set(INVARIANCES) == {"none", "average", "orbit_select", "shift_average", "center_of_mass"}
    assert INVARIANCES.get("average").meta["forward_cost"] == 2.0
    assert INVARIANCES.get("shift_average").meta["forward_cost"] == 9.0
    with pytest.raises(UnknownNameError, match="valid: average, center_of_mass, none, orbit_select, shift_average"):
        wrap_invariance("mirror", inner)


def test_wrappers_trace_into_one_graph():
    x = hard_images()
    for name in ("average", "orbit_select", "shift_average", "center_of_mass"):
        model = wrap_invariance(name, small_model()).eval()
        compiled = torch.compile(model, backend="eager", fullgraph=True)  # no graph breaks: no per-image Python
        with torch.no_grad():
            assert torch.equal(compiled(x), model(x))


def glyphs(n: int = 12, size: int = 16) -> torch.Tensor:
    """Random strokes inside the frame's middle (a 2-pixel margin of background): shifts keep them inside."""
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(n, 3, size, size)
    x[:, :, 3:size - 3, 3:size - 3] = torch.rand(n, 3, size - 6, size - 6, generator=g) ** 4
    return x


@pytest.mark.parametrize("train", [False, True])
def test_center_of_mass_is_exactly_invariant_to_shifts_that_keep_the_content_inside(train):
    model = wrap_invariance("center_of_mass", small_model()).train(train)
    x = glyphs()
    with torch.no_grad():
        out = model(x)
        for dy, dx in ((1, 0), (0, -2), (2, 1), (-2, -2)):
            assert same_bits(out, model(torch.roll(x, (dy, dx), dims=(2, 3))))
        assert not same_bits(out, wrap_invariance("none", model.model)(x))  # it does move the images


def test_shift_average_averages_the_nine_one_pixel_shifts():
    inner = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 16 * 16, 4))
    model = wrap_invariance("shift_average", inner)  # no global pooling: the inner model is not shift invariant
    x = glyphs(5)
    with torch.no_grad():
        expected = torch.stack([inner(torch.roll(x, (dy, dx), dims=(2, 3)))
                                for dy in (-1, 0, 1) for dx in (-1, 0, 1)]).mean(0)  # inside: shift == roll
        assert torch.allclose(model(x), expected, atol=1e-6, rtol=1e-5)
        assert not torch.allclose(inner(x), expected, atol=1e-4)
