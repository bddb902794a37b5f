"""Model registry. A model factory takes (width, in_channels, num_classes) and returns an nn.Module."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

from .registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


def create_model(name: str, *, width: int | None = None, in_channels: int, num_classes: int) -> nn.Module:
    return MODELS.create(name, width=width, in_channels=in_channels, num_classes=num_classes)


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


@MODELS.register("small_cnn",
                 doc="conv-BN-ReLU blocks of w, 2w, 4w channels, each after a 2x2 pool but the first")
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


@MODELS.register("resnet18", doc="CIFAR-stem ResNet-18: 3x3 stem, 4 stages of 2 BasicBlocks, w..8w channels")
def resnet18(*, width: int = 64, in_channels: int = 3, num_classes: int = 10) -> nn.Module:
    # The paper's model; it sweeps width 4..256. At width 64 it has the usual 11.17M parameters (10 classes).
    return _create_cifar_resnet((2, 2, 2, 2), width=width, in_channels=in_channels, num_classes=num_classes)


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
