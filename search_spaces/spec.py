"""The sweep spec: a strict pydantic model read from YAML, and its expansion into cells.

Strict means unknown keys, duplicate keys and wrong types are errors (no "100" -> 100 coercion), and every
error is one line naming the file, the line and the key path. Names of policies, models, data sets and eval
sets are checked against the registries by the orchestrator: this package imports nothing of ours.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .cells import Cell
from .yaml_strict import YamlError, dump_yaml, load_yaml

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"

PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
Fraction = Annotated[float, Field(gt=0, le=1)]


class SpecError(ValueError):
    """Bad spec input: one line naming the file, the line (where known) and the key path."""

    def __init__(self, message: str, *, source: str | None = None, path: str | None = None,
                 line: int | None = None) -> None:
        self.source, self.path, self.line, self.reason = source, path, line, message
        where = source or "spec"
        if line is not None:
            where += f":{line}"
        super().__init__(f"{where}: {path + ': ' if path else ''}{message}")


class _Strict(BaseModel):
    # allow_inf_nan=False: `lr: .inf` is an error here, not a crash when the cell key is computed
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class _LocatedError(ValueError):
    """A check across fields that knows which key path is at fault (pydantic puts it at the top)."""

    def __init__(self, message: str, loc: tuple[Any, ...]) -> None:
        super().__init__(message)
        self.loc = loc


class DatasetSpec(_Strict):
    name: str
    root: str | None = None  # the user's folder for file-based data sets; never part of a cell key


class ModelSpec(_Strict):
    name: str
    width: PositiveInt = 16


class AugmentationSpec(_Strict):
    policy: str
    # a number, or a list of numbers to sweep; None = the policy's default
    strength: Any = None

    @field_validator("strength")
    @classmethod
    def _numbers(cls, value: Any) -> Any:
        def number(v: Any) -> float:
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise ValueError(f"strength must be a finite number or a list of numbers, got {v!r}")
            return float(v)

        if value is None:
            return None
        if isinstance(value, list):
            if not value:
                raise ValueError("strength list is empty")
            return tuple(number(v) for v in value)
        return number(value)

    def strengths(self) -> list[float | None]:
        if self.strength is None:
            return [None]
        return list(self.strength) if isinstance(self.strength, tuple) else [self.strength]


class Budget(_Strict):
    steps: PositiveInt
    batch_size: PositiveInt
    eval_every: PositiveInt | None = None  # None: evaluate at the last step only


class Optimizer(_Strict):
    # The paper's SGD settings are the defaults.
    lr: Annotated[float, Field(gt=0)] = 0.1
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    nesterov: bool = True
    weight_decay: Annotated[float, Field(ge=0)] = 5e-4
    warmup_steps: NonNegativeInt = 0


class Execution(_Strict):
    """How cells run; never part of a cell's key."""

    cpus_per_cell: Annotated[float, Field(gt=0)] = 1.0
    gpus_per_cell: Annotated[float, Field(ge=0)] = 0.0
    retries: NonNegativeInt = 2
    cells_per_trial: PositiveInt | None = None  # None: chosen from the cell count and the cluster's slots
    max_concurrent: PositiveInt | None = None
    timeout_s: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None  # per attempt of one cell
    checkpoint_every: PositiveInt | None = None  # steps between checkpoints of a running cell; None: none
    checkpoint_storage: str | None = None  # where every node reaches; default <store>/<sweep>/checkpoints
    # modules that register more data sets, augmentations or models (importable on the driver and every node)
    plugins: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")]] = []


def _unique(values: Sequence[Any] | None, what: str, key: str) -> None:
    if values is not None:
        seen: dict[Any, int] = {}
        for i, v in enumerate(values):
            if v in seen:
                raise _LocatedError(f"duplicate {what} {v!r} (also at index {seen[v]})", (key, i))
            seen[v] = i


class Spec(_Strict):
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    description: str | None = None
    dataset: DatasetSpec
    model: ModelSpec
    augmentations: Annotated[list[AugmentationSpec], Field(min_length=1)]
    data_sizes: Annotated[list[PositiveInt], Field(min_length=1)] | None = None
    data_fractions: Annotated[list[Fraction], Field(min_length=1)] | None = None
    seeds: Annotated[list[NonNegativeInt], Field(min_length=1)]
    budget: Budget
    optimizer: Optimizer = Optimizer()
    eval_sets: Annotated[list[str], Field(min_length=1)] = ["test"]
    execution: Execution = Execution()

    @model_validator(mode="after")
    def _grid(self) -> Spec:
        if self.data_sizes is None and self.data_fractions is None:
            raise ValueError("give exactly one of data_sizes and data_fractions")
        if self.data_sizes is not None and self.data_fractions is not None:
            raise _LocatedError("give exactly one of data_sizes and data_fractions, not both",
                                ("data_fractions",))
        _unique(self.data_sizes, "data size", "data_sizes")
        _unique(self.data_fractions, "data fraction", "data_fractions")
        _unique(self.seeds, "seed", "seeds")
        _unique(self.eval_sets, "eval set", "eval_sets")
        if self.optimizer.warmup_steps > self.budget.steps:
            raise _LocatedError(
                f"warmup_steps ({self.optimizer.warmup_steps}) exceeds budget.steps ({self.budget.steps})",
                ("optimizer", "warmup_steps"),
            )
        return self

    def to_yaml(self) -> str:
        # dump_yaml, not yaml.safe_dump: a name like "1e3" must be quoted to read back as a string
        return dump_yaml(self.model_dump(mode="json", exclude_none=True))

    def grid_fields(self) -> dict[str, Any]:
        """Everything but `execution` and `description`: what must match for two specs to be one sweep."""
        return self.model_dump(mode="json", exclude={"execution", "description"})


# ----- loading --------------------------------------------------------------------------------------

def _key_path(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line_of(text: str, loc: Sequence[Any]) -> int | None:
    """The line of the deepest node on `loc` in the YAML text (best effort)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == part), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def parse_spec(text: str, source: str = "spec") -> Spec:
    try:
        data = load_yaml(text)
    except YamlError as exc:
        raise SpecError(str(exc), source=source, line=exc.line) from None
    if not isinstance(data, dict):
        raise SpecError(f"the spec must be a mapping, got {type(data).__name__}", source=source)
    try:
        return Spec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = [p for p in err["loc"]]
        located = (err.get("ctx") or {}).get("error")
        if isinstance(located, _LocatedError):
            loc = [*loc, *located.loc]
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "missing key"
        elif "input" in err and err["type"] not in {"value_error"} and not isinstance(err["input"], dict | list):
            msg += f" (got {err['input']!r})"
        raise spec_error(msg, text=text, source=source, loc=loc) from None


def spec_error(message: str, *, text: str | None, source: str, loc: Sequence[Any]) -> SpecError:
    """A SpecError at key path `loc`, with its line in `text` where it can be found."""
    line = _line_of(text, loc) if text is not None else None
    return SpecError(message, source=source, path=_key_path(loc) or None, line=line)


def read_spec_text(path: str | Path) -> str:
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):  # NotADirectoryError: `spec.yaml/x`
        raise SpecError("file not found", source=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read: {exc.__class__.__name__}", source=str(path)) from None


def load_spec(path: str | Path) -> Spec:
    return parse_spec(read_spec_text(path), source=str(path))


def preset_names() -> list[str]:
    folder = resources.files("search_spaces") / "presets"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def preset_path(name: str) -> Path:
    if name not in preset_names():  # a listed name only: nothing like '../x' reaches outside the folder
        raise SpecError(f"unknown preset {name!r} (valid: {', '.join(preset_names())})")
    return Path(str(resources.files("search_spaces") / "presets" / f"{name}.yaml"))


# ----- expansion ------------------------------------------------------------------------------------

def resolve_sizes(spec: Spec, *, pool_size: int, num_classes: int, source: str = "spec",
                  text: str | None = None) -> list[int]:
    """Absolute training sizes; fractions are of the pool, rounded, with at least one image per class."""
    if spec.data_sizes is not None:
        for i, size in enumerate(spec.data_sizes):
            if size > pool_size:
                raise spec_error(f"{size} is larger than the training pool ({pool_size} images)",
                                 text=text, source=source, loc=("data_sizes", i))
        return list(spec.data_sizes)
    sizes = [min(pool_size, max(num_classes, round(f * pool_size))) for f in spec.data_fractions or ()]
    return list(dict.fromkeys(sizes))


def expand_cells(
    spec: Spec,
    *,
    pool_size: int,
    num_classes: int,
    dataset_fingerprint: str,
    default_strength: Callable[[str], float | None],
    source: str = "spec",
    text: str | None = None,
) -> list[Cell]:
    """Every cell of the grid, in a stable order, without duplicates."""
    sizes = resolve_sizes(spec, pool_size=pool_size, num_classes=num_classes, source=source, text=text)
    treatments: list[tuple[str, float | None]] = []
    for aug in spec.augmentations:
        for strength in aug.strengths():
            treatments.append((aug.policy, default_strength(aug.policy) if strength is None else strength))
    b, o = spec.budget, spec.optimizer
    cells: dict[str, Cell] = {}
    for size in sizes:
        for seed in spec.seeds:
            for policy, strength in treatments:
                cell = Cell(
                    dataset=spec.dataset.name, dataset_fingerprint=dataset_fingerprint,
                    data_size=size, seed=seed, augmentation=policy, strength=strength,
                    model=spec.model.name, width=spec.model.width,
                    steps=b.steps, batch_size=b.batch_size, eval_every=b.eval_every or b.steps,
                    lr=o.lr, momentum=o.momentum, nesterov=o.nesterov,
                    weight_decay=o.weight_decay, warmup_steps=o.warmup_steps,
                )
                cells.setdefault(cell.cell_key, cell)
    if not cells:
        raise SpecError("the grid is empty", source=source)
    return list(cells.values())
