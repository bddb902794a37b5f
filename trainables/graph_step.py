"""The training step as one CUDA graph (`execution.cuda_graph`): forward, loss, backward and the SGD update are
captured once and replayed at every later step, so a step costs one launch instead of several hundred kernel
launches from Python. (The paper's ResNet-18 at batch 128 ran at ~4-5 % of an H200's bf16 rate in eager mode:
bound by launches, not arithmetic.)

What makes the step replayable:
- static shapes: every batch has the cell's batch size (`train.batch_indices` never yields a short one), copied
  into fixed input buffers before each replay;
- the learning rate is a device tensor that the schedule fills in place (LambdaLR writes a tensor lr with
  `fill_`), read by fused SGD on the device: a float would be frozen into the graph at its capture-time value;
- the momentum buffers and cuDNN's algorithm choice exist before the capture: the first WARMUP_STEPS steps run
  eagerly (real training steps, on a side stream, as capture requires);
- autocast without its cast cache: a cached bf16 copy of a weight would be captured once and go stale.

Augmentation stays outside the graph (it is batched over many steps already), as do evaluation, probes and
checkpoints, which run eagerly on the same weights between replays. CUDA only: `train.py` builds one only for a
CUDA cell with one micro-batch and no torch.compile, so CPU cells are unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .device import DeviceSettings, autocast_for

Tensor = torch.Tensor

WARMUP_STEPS = 3  # eager steps before the capture (torch's docs: a few, on a side stream)


def graph_optimizer(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Make `optimizer` (SGD) replayable: fused, its learning rate a device tensor. Call after creating the
    schedule (its base rates stay floats) and again after loading a checkpoint (which holds floats)."""
    for group in optimizer.param_groups:
        group["lr"] = torch.tensor(float(group["lr"]), dtype=torch.float32, device=device)
        group["fused"], group["foreach"] = True, False


def eager_optimizer_state(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's state_dict as the eager path writes it (float learning rates, the default
    implementation), so that a checkpoint resumes on any device and either path."""
    state = optimizer.state_dict()
    state["param_groups"] = [{**group, "lr": float(group["lr"]), "fused": None, "foreach": None}
                             for group in state["param_groups"]]
    return state


class GraphedStep:
    """`step(x, y) -> loss` like `train.train_step`, replayed from a CUDA graph after WARMUP_STEPS eager steps.
    The returned loss tensor is the graph's own output: read it before the next step overwrites it."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, settings: DeviceSettings) -> None:
        self.model, self.optimizer, self.settings = model, optimizer, settings
        self.side = torch.cuda.Stream(device=settings.device)
        self.eager_steps = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static: tuple[Tensor, Tensor, Tensor] | None = None  # x, y, loss

    def _forward_backward_update(self, x: Tensor, y: Tensor) -> Tensor:
        with autocast_for(self.settings, cache=False):
            loss = F.cross_entropy(self.model(x), y)
        loss.backward()
        self.optimizer.step()
        return loss

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        if self.graph is None and self.eager_steps < WARMUP_STEPS:
            self.side.wait_stream(torch.cuda.current_stream(self.settings.device))
            with torch.cuda.stream(self.side):
                self.optimizer.zero_grad(set_to_none=True)
                loss = self._forward_backward_update(x, y)
            torch.cuda.current_stream(self.settings.device).wait_stream(self.side)
            self.eager_steps += 1
            return loss
        if self.graph is None:
            self._capture(x, y)
        assert self.graph is not None and self.static is not None
        static_x, static_y, static_loss = self.static
        static_x.copy_(x)
        static_y.copy_(y)
        self.graph.replay()
        return static_loss

    def _capture(self, x: Tensor, y: Tensor) -> None:
        # capturing records kernels without running them: the step whose batch this is runs at the first replay
        static_x, static_y = x.clone(memory_format=torch.preserve_format), y.clone()
        self.optimizer.zero_grad(set_to_none=True)  # backward in the graph allocates the grads from its pool
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_loss = self._forward_backward_update(static_x, static_y)
        self.graph, self.static = graph, (static_x, static_y, static_loss)
