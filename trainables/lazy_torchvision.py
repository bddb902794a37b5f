"""torchvision, imported on first use.

Importing torchvision costs about 2 s here (its ops import torch._dynamo), paid by every Ray worker that
imports our registries. Most cells of a sweep on tensors (digits, crop, flip) never call it; the modules that
do ask for it here, where they use it.
"""

from __future__ import annotations

from types import ModuleType


def tf() -> ModuleType:
    """torchvision.transforms.v2.functional."""
    from torchvision.transforms.v2 import functional

    return functional
