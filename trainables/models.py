"""Model registry. A model factory takes (width, in_channels, num_classes) and returns an nn.Module."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


def create_model(name: str, *, width: int | None = None, in_channels: int, num_classes: int) -> nn.Module:
    return MODELS.create(name, width=width, in_channels=in_channels, num_classes=num_classes)


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


@MODELS.register("small_cnn", doc="conv-BN-ReLU blocks of w, 2w, 4w channels, each after a 2x2 pool but the first")
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
