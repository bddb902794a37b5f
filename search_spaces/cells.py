"""A cell is one training run; its `cell_key` names it in every sweep.

The key is a short hash of the canonical JSON of the resolved cell. Fields at their neutral default are
left out of the hash, so adding a field later (with a neutral default) does not re-key old cells.
Execution settings never enter a cell.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

KEY_VERSION = 1

# Fields whose neutral value is omitted from the key (later issues add more here).
NEUTRAL_DEFAULTS: dict[str, Any] = {
    "views": "random", "views_r": None, "views_first_clean": False, "invariance": "none",
    "subset": "nested", "accumulate": 1, "normalize": False,
}

# What a cell's fields are to the analysis. Treatment: what is compared against the reference. Group:
# everything else that a fit must hold fixed. The rest (data_size, seed) are a fit's points.
TREATMENT_COLUMNS: tuple[str, ...] = (
    "augmentation", "strength", "views", "views_r", "views_first_clean", "invariance",
)
GROUP_COLUMNS: tuple[str, ...] = (
    "dataset", "dataset_fingerprint", "subset", "normalize", "model", "width",
    "steps", "batch_size", "accumulate", "eval_every",
    "lr", "momentum", "nesterov", "weight_decay", "warmup_steps",
)
# Besides the policy and strength, what a treatment's label names where the rows shown differ in it.
LABEL_COLUMNS: tuple[str, ...] = ("views", "views_r", "views_first_clean", "invariance", "model", "width", "subset",
                                  "accumulate")
# Measured at chosen steps, never part of a key: one column each in the store.
PROBE_COLUMNS: tuple[str, ...] = ("grad_noise", "flatness", "flatness_std", "hessian_top_eig")
PROBE_NAMES: tuple[str, ...] = ("grad_noise", "flatness", "hessian")


@dataclass(frozen=True)
class ProbeSettings:
    """The spec's `probes` block as the training loop takes it (no pydantic on a worker). Its defaults are the
    spec's: `search_spaces.spec.Probes` reads them from here, so they are written once."""

    grad_noise: bool = False
    flatness: bool = False
    hessian: bool = False
    steps: tuple[int, ...] | None = None  # None: the last step
    samples: int = 2048  # training images of the cell the probes use (its first ones)
    batch_size: int | None = None  # gradient noise's batches; None: the budget's batch size
    threshold: float = 1.0  # flatness: the absolute training loss to reach
    directions: int = 1  # flatness: random directions (the paper used one)
    hessian_iterations: int = 20

    def which(self) -> list[str]:
        """The probes asked for, in PROBE_NAMES order."""
        return [n for n in PROBE_NAMES if getattr(self, n)]


@dataclass(frozen=True)
class Cell:
    # data
    dataset: str
    dataset_fingerprint: str  # content hash of the pool and test split (options like CINIC's recipe included)
    data_size: int
    seed: int
    # treatment
    augmentation: str
    strength: float | None
    # model
    model: str
    width: int
    # budget: fixed steps whatever the data size (the paper's choice)
    steps: int
    batch_size: int
    eval_every: int
    # optimiser
    lr: float
    momentum: float
    nesterov: bool
    weight_decay: float
    warmup_steps: int
    # Fields added after the first release: at their neutral default they stay out of the key.
    views: str = "random"  # random (fresh each step) | fixed (views_r frozen views) | same_batch (views_r per batch)
    views_r: int | None = None
    views_first_clean: bool = False  # fixed views: the first of the r views is the un-augmented image
    invariance: str = "none"  # none | average | orbit_select | shift_average | center_of_mass (a wrapper)
    subset: str = "nested"  # nested subsets across sizes, or independent draws per size (the paper's)
    accumulate: int = 1  # micro-batches per step (BatchNorm sees batch_size / accumulate images at a time)
    normalize: bool = False  # the model sees (x - mean) / std per channel of the pool (the paper's inputs)

    @property
    def cell_key(self) -> str:
        return cell_key(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cell:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def canonical_json(cell: Cell) -> str:
    data = {k: v for k, v in asdict(cell).items() if not (k in NEUTRAL_DEFAULTS and v == NEUTRAL_DEFAULTS[k])}
    for k in _FLOAT_FIELDS:  # 2 and 2.0 are one value: JSON would write them apart ("2" vs "2.0")
        if isinstance(data.get(k), int) and not isinstance(data[k], bool):
            data[k] = float(data[k])
    data["key_version"] = KEY_VERSION
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)


def cell_key(cell: Cell) -> str:
    """16 hex characters of SHA-256 over the canonical JSON: stable across runs, sweeps and machines."""
    return hashlib.sha256(canonical_json(cell).encode()).hexdigest()[:16]


CELL_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Cell))
# Fields declared float (or float | None): their values are keyed as floats whatever the caller passed.
_FLOAT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Cell) if "float" in str(f.type))


def _missing(value: Any) -> bool:
    # None, NaN, or pandas' NA (this module must not import pandas)
    return value is None or (isinstance(value, float) and math.isnan(value)) or type(value).__name__ == "NAType"


def treatment_label(fields: Mapping[str, Any], varying: Iterable[str] = ()) -> str:
    """'crop(4)'; then, in brackets, the `varying` fields (LABEL_COLUMNS the rows shown differ in): the views
    first ('fixed 4'), then 'invariance=average', 'model=vgg13' and so on. Tables, plots and status share it."""
    strength: Any = fields.get("strength")
    name = fields["augmentation"] if _missing(strength) else f"{fields['augmentation']}({float(strength):g})"
    varying = list(varying)
    extra = [f"{c}={fields[c]}" for c in varying if c not in ("views", "views_r")]
    if {"views", "views_r"} & set(varying):
        r: Any = fields.get("views_r")
        extra.insert(0, str(fields.get("views")) + ("" if _missing(r) else f" {int(r)}"))
    return name + (f" [{', '.join(extra)}]" if extra else "")

