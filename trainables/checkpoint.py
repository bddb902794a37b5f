"""Checkpoints of a running cell, found by its cell key, so a restarted cell continues where it stopped.

A checkpoint holds the model, optimiser and schedule states, the augmentation generator's state, the step,
the evaluations so far and the training seconds spent. The data order is not stored: it is replayed from the
seed. Files are written through a temp name and a rename (or one put on an object store) and loaded with
`torch.load(weights_only=True)`, so loading a checkpoint never runs pickled code.
"""

from __future__ import annotations

import contextlib
import io
import os
import uuid
from collections.abc import Callable
from typing import Any

import torch


class Checkpointer:
    """Save every `every` steps to `<root>/<cell_key>.pt`; `root` is a local path or a pyarrow URI."""

    def __init__(self, root: str, cell_key: str, every: int, *,
                 on_save: Callable[[int], Any] | None = None, on_load: Callable[[int], Any] | None = None) -> None:
        if every <= 0:
            raise ValueError(f"checkpoint interval must be positive, got {every}")
        self.every, self.key = every, cell_key
        self.on_save, self.on_load = on_save, on_load  # told the step: the trainable reports it to the driver
        if "://" in root:
            import pyarrow.fs as pafs

            self.fs, base = pafs.FileSystem.from_uri(root)
        else:
            self.fs, base = None, os.path.abspath(root)
        self.path = f"{base.rstrip('/')}/{cell_key}.pt"

    def load(self) -> dict[str, Any] | None:
        try:
            if self.fs is None:
                with open(self.path, "rb") as f:
                    data = f.read()
            else:
                with self.fs.open_input_stream(self.path) as f:
                    data = f.read()
        except FileNotFoundError:
            return None
        state = torch.load(io.BytesIO(data), weights_only=True)
        if self.on_load is not None:
            self.on_load(int(state["step"]))
        return state

    def save(self, state: dict[str, Any]) -> None:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        folder = self.path.rsplit("/", 1)[0]
        if self.fs is None:
            os.makedirs(folder, exist_ok=True)
            tmp = f"{folder}/.{self.key}.{uuid.uuid4().hex[:8]}.tmp"
            with open(tmp, "wb") as f:
                f.write(buffer.getvalue())
            os.replace(tmp, self.path)
        else:
            self.fs.create_dir(folder, recursive=True)
            with self.fs.open_output_stream(self.path) as f:
                f.write(buffer.getvalue())
        if self.on_save is not None:
            self.on_save(int(state["step"]))

    def clear(self) -> None:
        with contextlib.suppress(FileNotFoundError):  # clearing twice is fine
            os.remove(self.path) if self.fs is None else self.fs.delete_file(self.path)
