"""Model registry. A model factory takes (width, in_channels, num_classes) and returns an nn.Module.

Every entry carries metadata:

- `default_width`: the width a spec that names no width gets (the factory's own default).
- `gpu_images_per_second`: training images per second at batch 128, 32x32 inputs, bf16, on one A100-class GPU
  at the default width. These are ESTIMATES (rough figures from published throughputs and FLOP counts), not
  measurements: this project was written without a GPU. They feed only the "estimated GPU-hours" of
  `augworth presets`, scaled to other widths and image sizes by `flops_per_image`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn

from .registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model", meta=("gpu_images_per_second",),
                                                    required=("default_width",))


def create_model(name: str, *, width: int | None = None, in_channels: int, num_classes: int) -> nn.Module:
    return MODELS.create(name, width=width, in_channels=in_channels, num_classes=num_classes)


def default_width(name: str) -> int:
    """The width a spec that names no width gets (required metadata of every model)."""
    return int(MODELS.get(name).meta["default_width"])


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


@MODELS.register("small_cnn",
                 doc="conv-BN-ReLU blocks of w, 2w, 4w channels, each after a 2x2 pool but the first",
                 default_width=16, gpu_images_per_second=100_000)
def small_cnn(*, width: int = 16, in_channels: int = 3, num_classes: int = 10) -> nn.Module:
    # Pooling right after the first block keeps the wide layers at low resolution: a step on the
    # embedded data costs a few milliseconds on one CPU thread.
    return nn.Sequential(
        _conv_bn(in_channels, width),  # (B, w, H, W)
        nn.MaxPool2d(2),
        _conv_bn(width, 2 * width),  # (B, 2w, H/2, W/2)
        nn.MaxPool2d(2),
        _conv_bn(2 * width, 4 * width),  # (B, 4w, H/4, W/4)
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4 * width, num_classes),
    )


def _resnet_stage(c_in: int, c_out: int, blocks: int, stride: int) -> nn.Sequential:
    # a 1x1 conv + BN shortcut where the shape changes, identity elsewhere (torchvision's _make_layer)
    shortcut = None
    if stride != 1 or c_in != c_out:
        shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))
    from torchvision.models.resnet import BasicBlock  # on first use: torchvision costs seconds to import

    first = BasicBlock(c_in, c_out, stride=stride, downsample=shortcut)
    return nn.Sequential(first, *(BasicBlock(c_out, c_out) for _ in range(blocks - 1)))


def _create_cifar_resnet(blocks: tuple[int, ...], *, width: int, in_channels: int,
                         num_classes: int) -> nn.Module:
    """ResNet with the CIFAR stem: one 3x3 conv at stride 1 and no max-pool, so 32x32 inputs keep their
    resolution into the first stage (ImageNet's 7x7/2 conv + pool would leave 8x8)."""
    channels = [width * 2**i for i in range(len(blocks))]  # w, 2w, 4w, 8w
    stages = [
        _resnet_stage(c_in, c_out, n, stride=1 if i == 0 else 2)
        for i, (c_in, c_out, n) in enumerate(zip([width, *channels[:-1]], channels, blocks, strict=True))
    ]
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1, bias=False),  # (B, w, H, W)
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        *stages,  # (B, 8w, H/8, W/8)
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(channels[-1], num_classes),
    )


@MODELS.register("resnet18", doc="CIFAR-stem ResNet-18: 3x3 stem, 4 stages of 2 BasicBlocks, w..8w channels",
                 default_width=64, gpu_images_per_second=10_000)
def resnet18(*, width: int = 64, in_channels: int = 3, num_classes: int = 10) -> nn.Module:
    # The paper's model; it sweeps width 4..256. At width 64 it has the usual 11.17M parameters (10 classes).
    return _create_cifar_resnet((2, 2, 2, 2), width=width, in_channels=in_channels, num_classes=num_classes)


# VGG-13 (torchvision's configuration "B"); "M" is a 2x2 max-pool. Channels are multiples of the width w.
_VGG13_STAGES: tuple[tuple[int, int], ...] = ((1, 2), (2, 2), (4, 2), (8, 2), (8, 2))  # (channels / w, convs)


@MODELS.register("vgg13", doc="CIFAR VGG-13 (cfg B) with BN: 5 stages of two conv3x3-BN-ReLU (w,2w,4w,8w,8w), "
                 "each followed by a 2x2 max-pool (ceil mode), global pool, one linear layer",
                 default_width=64, gpu_images_per_second=12_000)
def vgg13(*, width: int = 64, in_channels: int = 3, num_classes: int = 10) -> nn.Module:
    """The usual CIFAR VGG-13 (e.g. kuangliu/pytorch-cifar): the conv part of torchvision's `vgg13_bn` and a
    single Linear(8w, classes) instead of the ImageNet 4096-4096 head. At width 64 it has 9,413,066 parameters
    (10 classes): the convs have no bias, as in this file's other models (a bias before BN is a no-op; the
    variants with conv biases count 2,944 more).

    Small inputs: the five max-pools use `ceil_mode=True`, so a 1x1 map stays 1x1 instead of failing and any
    side >= 1 works (16x16: 8, 4, 2, 1, 1; 8x8: 4, 2, 1, 1, 1). On even sides ceil mode changes nothing, so
    32x32 inputs get the standard architecture (32 -> 1 after five pools); the global average pool before the
    classifier is then a no-op on the 1x1 map and only matters for sides whose last map is larger (e.g. 64x64).
    """
    layers: list[nn.Module] = []
    c_in = in_channels
    for mult, convs in _VGG13_STAGES:
        for _ in range(convs):
            layers.append(_conv_bn(c_in, mult * width))
            c_in = mult * width
        layers.append(nn.MaxPool2d(2, ceil_mode=True))
    return nn.Sequential(
        *layers,  # (B, 8w, ceil(H/32), ceil(W/32))
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(c_in, num_classes),
    )


class Residual(nn.Module):
    """x + fn(x)."""

    def __init__(self, fn: nn.Module) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fn(x)


@MODELS.register("convmixer", doc="ConvMixer-w/16, kernel 7, patch 1 (Trockman & Kolter): patch conv, 16 blocks of "
                 "residual depthwise conv + pointwise conv (GELU, BN), global pool, linear",
                 default_width=256, gpu_images_per_second=4_000)
def convmixer(*, width: int = 256, in_channels: int = 3, num_classes: int = 10, depth: int = 16,
              kernel_size: int = 7, patch_size: int = 1) -> nn.Module:
    """ConvMixer-`width`/`depth` as in the paper's reference code; `width` is the hidden dimension.

    ConvMixer-256/16 (kernel 7, patch 1) has 1,277,962 parameters for 10 classes. Odd kernels keep the side
    (padding k // 2); the side after the patch embedding is H // patch_size.
    """
    def block() -> nn.Module:
        return nn.Sequential(
            Residual(nn.Sequential(
                nn.Conv2d(width, width, kernel_size, groups=width, padding=kernel_size // 2),  # depthwise
                nn.GELU(),
                nn.BatchNorm2d(width),
            )),
            nn.Conv2d(width, width, 1),  # pointwise
            nn.GELU(),
            nn.BatchNorm2d(width),
        )

    return nn.Sequential(
        nn.Conv2d(in_channels, width, patch_size, stride=patch_size),  # (B, w, H/p, W/p)
        nn.GELU(),
        nn.BatchNorm2d(width),
        *(block() for _ in range(depth)),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(width, num_classes),
    )


@functools.lru_cache(maxsize=256)
def flops_per_image(model_name: str, width: int | None = None, image_size: int = 32, in_channels: int = 3,
                    num_classes: int = 10) -> int:
    """Forward FLOPs (2 per multiply-add) of one `image_size` x `image_size` image, counted by
    `torch.utils.flop_counter.FlopCounterMode` (convolutions and matrix products; BN, activations and pools are
    not counted) on a model built on the meta device, so nothing is allocated or computed: resnet18 at width
    256 takes milliseconds. A training step costs about 3x the forward. Cached per argument tuple.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = create_model(model_name, width=width, in_channels=in_channels, num_classes=num_classes).eval()
        image = torch.empty(1, in_channels, image_size, image_size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(image)
    return int(counter.get_total_flops())


def init_seeded(model: nn.Module, seed: int) -> nn.Module:
    """Re-initialise from `seed` alone, so every treatment of a (size, seed) starts from the same weights."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu", generator=gen)
                if module.bias is not None:
                    module.bias.zero_()
    return model


class Standardize(nn.Module):
    """(x - mean) / std per channel in front of a model: the paper's input normalisation (a cell's
    `normalize`). Its constants are non-persistent buffers, so the model's state dict is unchanged."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def standardized(model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> nn.Module:
    """The model behind a `Standardize` of its inputs."""
    return nn.Sequential(Standardize(mean, std), model)
