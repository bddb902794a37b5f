"""A finished cell's final weights, kept under its sweep (`execution.keep_weights`), and what they are for:
evaluating the cell on an eval set it was not trained with, without training it again (`augworth evaluate`).

One file per cell, `<folder>/<cell_key>.pt`: the model's state dict on the CPU and the cell key it belongs to,
written atomically through the store's file layer and loaded with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from augworth.results.files import Root
from augworth.search_spaces.cells import Cell

from .datasets import DataSet
from .device import device_settings
from .train import build_model, evaluate, load_eval_sets


def weights_path(root: Root, key: str) -> str:
    return f"{root.path}/{key}.pt"


def save_weights(folder: str, cell: Cell, model: nn.Module) -> str:
    """Write the trained model's weights for `cell`; returns the file's path."""
    state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save({"cell_key": cell.cell_key, "model": state}, buffer)
    root = Root(folder)
    path = weights_path(root, cell.cell_key)
    root.write_atomic(path, buffer.getvalue())
    return path


def kept_keys(folder: str) -> set[str]:
    """The cell keys with a weights file in `folder` (by name: `load_weights` checks the content)."""
    root = Root(folder)
    return {path.rsplit("/", 1)[1][: -len(".pt")] for path in root.list(root.path, ".pt")}


def load_weights(folder: str, key: str) -> dict[str, torch.Tensor]:
    """The state dict kept for cell `key`; FileNotFoundError if there is none, ValueError if the file is not
    a weights file or holds another cell's weights (copied or renamed by hand)."""
    root = Root(folder)
    path = weights_path(root, key)
    try:
        saved = torch.load(io.BytesIO(root.read_bytes(path)), weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError) as exc:  # truncated or not torch's: the file's fault
        raise ValueError(f"{path}: not a weights file ({str(exc).splitlines()[0]})") from None
    if not isinstance(saved, dict) or saved.get("cell_key") != key:
        held = saved.get("cell_key") if isinstance(saved, dict) else None
        raise ValueError(f"{path} holds the weights of cell {held}, not {key}")
    state = saved.get("model")
    if not isinstance(state, Mapping) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                 for k, v in state.items()):
        raise ValueError(f"{path}: its model is not a state dict (names to tensors) but {type(state).__name__}")
    return dict(state)


def evaluate_weights(cell: Cell, data: DataSet, state: Mapping[str, torch.Tensor],
                     eval_sets: Sequence[str | Mapping[str, Any]], device: str = "cpu") -> list[dict[str, Any]]:
    """The cell's model with its kept weights, evaluated on `eval_sets` (names or the spec's requests) exactly as
    the training loop evaluates: one dict per set with eval_set (its label), accuracy, loss, n_eval and
    eval_set_fingerprint."""
    settings = device_settings(device)
    model = build_model(cell, data, settings)
    try:
        model.load_state_dict(state)  # strict: a kept file from another model or width fails here, not silently
    except RuntimeError as exc:
        raise ValueError(f"the kept weights do not fit the cell's model ({str(exc).splitlines()[0]})") from None
    evals, fingerprints = load_eval_sets(data, eval_sets, settings)
    out = []
    for label, (x, y) in evals.items():
        accuracy, loss = evaluate(model, x, y, settings)
        out.append({"eval_set": label, "accuracy": accuracy, "loss": loss, "n_eval": len(y),
                    "eval_set_fingerprint": fingerprints[label]})
    return out
