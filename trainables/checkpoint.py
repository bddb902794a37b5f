"""Checkpoints of a running cell, found by its cell key, so a restarted cell continues where it stopped.

A checkpoint holds the model, optimiser and schedule states, the augmentation generator's state, the step,
the evaluations so far and the training seconds spent. The data order is not stored: it is replayed from the
seed. Files are written through a temp name and a rename (or one put on an object store) and loaded with
`torch.load(weights_only=True)`, so loading a checkpoint never runs pickled code.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from augworth.results.files import Root


class Checkpointer:
    """Save every `every` steps to `<root>/<cell_key>.pt`; `root` is a local path or a pyarrow URI. The file
    layer (URI parsing, atomic write) is the store's `Root`, so the two cannot drift apart."""

    def __init__(self, root: str, cell_key: str, every: int, *,
                 on_save: Callable[[int], Any] | None = None, on_load: Callable[[int], Any] | None = None) -> None:
        if every <= 0:
            raise ValueError(f"checkpoint interval must be positive, got {every}")
        self.every, self.key = every, cell_key
        self.on_save, self.on_load = on_save, on_load  # told the step: the trainable reports it to the driver
        self.root = Root(root)
        self.path = f"{self.root.path}/{cell_key}.pt"

    def load(self) -> dict[str, Any] | None:
        try:
            data = self.root.read_bytes(self.path)
        except FileNotFoundError:
            return None
        import torch  # here, not at the top: the driver clears checkpoints and must not import torch for it

        state = torch.load(io.BytesIO(data), weights_only=True)
        if self.on_load is not None:
            self.on_load(int(state["step"]))
        return state

    def save(self, state: dict[str, Any]) -> None:
        import torch

        buffer = io.BytesIO()
        torch.save(state, buffer)
        self.root.write_atomic(self.path, buffer.getvalue())
        if self.on_save is not None:
            self.on_save(int(state["step"]))

    def clear(self) -> None:
        self.root.delete(self.path)  # clearing twice is fine
