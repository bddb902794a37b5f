"""The sweep spec: a strict pydantic model read from YAML, and its expansion into cells.

Strict means unknown keys, duplicate keys and wrong types are errors (no "100" -> 100 coercion), and every
error is one line naming the file, the line and the key path. Names of policies, models, data sets and eval
sets are checked against the registries by the orchestrator: this package imports nothing of ours.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator
from typing_extensions import TypeAliasType

from .cells import PROBE_NAMES, ProbeSettings
from .design import DesignSpec, check_design
from .options import canonical_options, plain_options
from .search import SearchSpec, check_search
from .strict import LocatedError, Strict
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


# What a registered component's options may hold: JSON-shaped data (scalars, lists, nested mappings). Each
# options mapping is kept in its canonical form (`options.plain_options`: keys sorted), so the frozen spec, the
# caches, the eval sets' fingerprints and the comparison of two specs all see one spelling.
OptionValue = TypeAliasType(
    "OptionValue", "str | int | float | bool | list[OptionValue] | dict[str, OptionValue]")
Options = dict[str, OptionValue]


class DatasetSpec(Strict):
    name: str
    root: str | None = None  # the user's folder for file-based data sets; never part of a cell key
    download: bool = False  # let torchvision download it into root (cifar10, cifar100 only)
    # the loader's own options (e.g. cinic10's recipe: paper); they change the data, so the fingerprint
    options: Options = {}
    subsets: Literal["nested", "independent"] = "nested"  # independent: a fresh draw per size (the paper's)
    normalize: bool = False  # inputs standardised by the pool's per-channel mean and std (the paper's)

    @field_validator("options")
    @classmethod
    def _canonical_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        return plain_options(options)


class EvalSetSpec(Strict):
    name: str
    label: Annotated[str, Field(pattern=NAME_PATTERN)] | None = None  # the store's eval_set; default: name
    root: str | None = None
    options: Options = {}

    @field_validator("options")
    @classmethod
    def _canonical_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        return plain_options(options)

    def request(self) -> dict[str, Any]:
        """What a worker needs to build it (plain data: it travels through Ray)."""
        return {"label": self.label or self.name, "name": self.name, "root": self.root,
                "options": dict(self.options)}


class ModelSpec(Strict):
    name: str
    # one width or a list to sweep; None: the model's own default (resnet18 64, small_cnn 16, ...)
    width: PositiveInt | Annotated[list[PositiveInt], Field(min_length=1)] | None = None

    def widths(self) -> list[int | None]:
        if self.width is None:
            return [None]
        return list(self.width) if isinstance(self.width, list) else [self.width]


class ViewsSpec(Strict):
    """How augmented views are drawn: fresh each step, r frozen per image, or k of each image in a batch."""

    mode: Literal["random", "fixed", "same_batch"] = "random"
    r: PositiveInt | Annotated[list[PositiveInt], Field(min_length=1)] | None = None  # fixed: views per image
    k: PositiveInt | Annotated[list[PositiveInt], Field(min_length=1)] | None = None  # same_batch: views in a batch
    first_clean: bool = False  # fixed: the first view of each image is the image itself

    @model_validator(mode="after")
    def _fields_of_mode(self) -> ViewsSpec:
        wanted = {"random": None, "fixed": "r", "same_batch": "k"}[self.mode]
        for name in ("r", "k"):
            given = getattr(self, name) is not None
            if name == wanted and not given:
                raise LocatedError(f"views mode {self.mode!r} needs {name}", (name,))
            if name != wanted and given:
                raise LocatedError(f"{name} does not apply to views mode {self.mode!r}", (name,))
        if self.first_clean and self.mode != "fixed":
            raise LocatedError("first_clean applies to views mode 'fixed' only", ("first_clean",))
        return self

    def counts(self) -> list[int | None]:
        value = self.r if self.mode == "fixed" else self.k
        if value is None:
            return [None]
        return list(value) if isinstance(value, list) else [value]


class Probes(Strict):
    """Measurements at chosen steps on un-augmented training images; they never change training. The
    defaults and their meaning: `cells.ProbeSettings`."""

    grad_noise: bool = ProbeSettings.grad_noise
    flatness: bool = ProbeSettings.flatness
    hessian: bool = ProbeSettings.hessian
    steps: Annotated[list[PositiveInt], Field(min_length=1)] | None = None  # None: the last step
    samples: PositiveInt = ProbeSettings.samples
    batch_size: PositiveInt | None = ProbeSettings.batch_size
    threshold: Annotated[float, Field(gt=0)] = ProbeSettings.threshold
    directions: PositiveInt = ProbeSettings.directions
    hessian_iterations: PositiveInt = ProbeSettings.hessian_iterations

    def which(self) -> list[str]:
        return [n for n in PROBE_NAMES if getattr(self, n)]

    def settings(self, batch_size: int) -> ProbeSettings:
        """What the training loop takes; gradient noise's batches default to the budget's `batch_size`."""
        return ProbeSettings(**(self.model_dump() | {"steps": tuple(self.steps) if self.steps else None,
                                                     "batch_size": self.batch_size or batch_size}))


class AugmentationSpec(Strict):
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


class Exclusion(Strict):
    """Grid points left out: those matching every key given (a value, or a list of values). Keys are the grid's
    axes that never need a default resolved, so `grid_size` counts the same points as the expansion."""

    augmentation: str | list[str] | None = None
    invariance: str | list[str] | None = None
    views: str | list[str] | None = None
    model: str | list[str] | None = None

    @model_validator(mode="after")
    def _some(self) -> Exclusion:
        if not self.model_dump(exclude_none=True):
            raise ValueError("an exclude entry needs at least one of augmentation, invariance, views, model")
        return self

    def matches(self, point: dict[str, Any]) -> bool:
        given = self.model_dump(exclude_none=True)
        return all(point[k] in ([v] if isinstance(v, str) else v) for k, v in given.items())


class Budget(Strict):
    # The paper's: exactly 60,000 steps of batch 128 whatever the data size.
    steps: PositiveInt = 60_000
    batch_size: PositiveInt = 128
    eval_every: PositiveInt | None = None  # None: evaluate at the last step only
    accumulate: PositiveInt = 1  # micro-batches per step, for widths whose batch does not fit in memory

    @model_validator(mode="after")
    def _divisible(self) -> Budget:
        if self.batch_size % self.accumulate:
            raise LocatedError(f"batch_size ({self.batch_size}) is not a multiple of accumulate "
                                f"({self.accumulate})", ("accumulate",))
        return self


class Optimizer(Strict):
    # The paper's SGD settings are the defaults.
    lr: Annotated[float, Field(gt=0)] = 0.1
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    nesterov: bool = True
    weight_decay: Annotated[float, Field(ge=0)] = 5e-4
    warmup_steps: NonNegativeInt | None = None  # None: steps / 30, the paper's 2,000 of 60,000

    def resolved_warmup(self, steps: int) -> int:
        return round(steps / 30) if self.warmup_steps is None else self.warmup_steps


class Execution(Strict):
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
    deterministic: bool = False  # CUDA: deterministic kernels, no cuDNN autotuning (slower); CPU is already
    cuda_graph: bool = False  # CUDA: each step replayed from one captured CUDA graph; ignored on CPU
    keep_weights: bool = False  # each cell's final weights to <store>/<sweep>/weights/, for `augworth evaluate`


def _unique(values: Sequence[Any] | None, what: str, key: str) -> None:
    if values is not None:
        seen: dict[Any, int] = {}
        for i, v in enumerate(values):
            if v in seen:
                raise LocatedError(f"duplicate {what} {v!r} (also at index {seen[v]})", (key, i))
            seen[v] = i


class Spec(Strict):
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    description: str | None = None
    dataset: DatasetSpec
    model: ModelSpec | Annotated[list[ModelSpec], Field(min_length=1)]  # one model, or a list to sweep
    augmentations: Annotated[list[AugmentationSpec], Field(min_length=1)]
    views: Annotated[list[ViewsSpec], Field(min_length=1)] = [ViewsSpec()]
    invariance: Annotated[list[str], Field(min_length=1)] = ["none"]  # trainables.invariance.INVARIANCES
    data_sizes: Annotated[list[PositiveInt], Field(min_length=1)] | None = None
    data_fractions: Annotated[list[Fraction], Field(min_length=1)] | None = None
    seeds: Annotated[list[NonNegativeInt], Field(min_length=1)]
    budget: Budget = Budget()
    optimizer: Optimizer = Optimizer()
    eval_sets: Annotated[list[str | EvalSetSpec], Field(min_length=1)] = ["test"]
    probes: Probes | None = None
    exclude: list[Exclusion] = []  # grid points left out, e.g. {augmentation: flip, invariance: average}
    search: SearchSpec | None = None  # adaptive mode: Optuna searches these policies' parameters (search.py)
    design: DesignSpec | None = None  # the grid's cells trained in the order that resolves v fastest (design.py)
    execution: Execution = Execution()
    # overrides merged into this spec by `--smoke`: a scaled-down run of the same grid's structure
    smoke: dict[str, Any] | None = None

    def models(self) -> list[ModelSpec]:
        return self.model if isinstance(self.model, list) else [self.model]

    def eval_requests(self) -> list[dict[str, Any]]:
        return [EvalSetSpec(name=e).request() if isinstance(e, str) else e.request() for e in self.eval_sets]

    def eval_set_meanings(self) -> dict[str, tuple[str, str]]:
        """label -> (eval set name, canonical options): what each label means. One sweep, one meaning per label:
        the frozen spec and a spec run against it are compared by this (and by the sets' content, in the plan)."""
        return {r["label"]: (r["name"], canonical_options(r["options"])) for r in self.eval_requests()}

    @model_validator(mode="after")
    def _grid(self) -> Spec:
        if self.data_sizes is None and self.data_fractions is None:
            raise ValueError("give exactly one of data_sizes and data_fractions")
        if self.data_sizes is not None and self.data_fractions is not None:
            raise LocatedError("give exactly one of data_sizes and data_fractions, not both",
                                ("data_fractions",))
        _unique(self.data_sizes, "data size", "data_sizes")
        _unique(self.data_fractions, "data fraction", "data_fractions")
        _unique(self.seeds, "seed", "seeds")
        _unique([e["label"] for e in self.eval_requests()], "eval set (label)", "eval_sets")
        _unique(self.invariance, "invariance", "invariance")
        for i, views in enumerate(self.views):
            if views.mode == "same_batch":
                for k in views.counts():
                    if k is not None and (self.budget.batch_size // self.budget.accumulate) % k:
                        micro = self.budget.batch_size // self.budget.accumulate
                        raise LocatedError(f"batch_size / accumulate ({micro}) is not a multiple of k ({k})",
                                            ("views", i, "k"))
        if self.probes is not None:
            for i, step in enumerate(self.probes.steps or ()):
                if step > self.budget.steps:
                    raise LocatedError(f"probe step {step} is past budget.steps ({self.budget.steps})",
                                        ("probes", "steps", i))
        if self.optimizer.warmup_steps is not None and self.optimizer.warmup_steps > self.budget.steps:
            raise LocatedError(
                f"warmup_steps ({self.optimizer.warmup_steps}) exceeds budget.steps ({self.budget.steps})",
                ("optimizer", "warmup_steps"),
            )
        check_search(self)
        check_design(self)
        return self

    def to_yaml(self) -> str:
        # dump_yaml, not yaml.safe_dump: a name like "1e3" must be quoted to read back as a string
        return dump_yaml(self.model_dump(mode="json", exclude_none=True))

    def grid_fields(self) -> dict[str, Any]:
        """Everything but `execution`, `description`, `smoke` and `design` (which cells to train, not what a cell is):
        what must match for two specs to be one sweep."""
        fields = self.model_dump(mode="json", exclude={"execution", "description", "smoke", "search", "design"})
        return fields | ({"search": self.search.grid_fields()} if self.search is not None else {})


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
        err, loc = _most_specific(exc, data)
        located = (err.get("ctx") or {}).get("error")
        if isinstance(located, LocatedError):
            loc = [*loc, *located.loc]
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "missing key"
        elif "input" in err and err["type"] not in {"value_error"} and not isinstance(err["input"], dict | list):
            msg += f" (got {err['input']!r})"
        raise spec_error(msg, text=text, source=source, loc=loc) from None


_UNION_TAG = re.compile(r"^(?:[A-Z]\w*|\w+\[.*\]|[\w-]+-[\w-]+|str|int|float|bool)$")


def _data_path(loc: Sequence[Any], data: Any) -> list[Any]:
    """`loc` without pydantic's union-member tags ('ModelSpec', 'list[...]'): the keys the user wrote."""
    path, node = [], data
    for part in loc:
        if isinstance(node, dict) and part in node or isinstance(node, list) and isinstance(part, int):
            node = node[part] if not isinstance(node, list) or part < len(node) else None
        elif isinstance(part, str) and _UNION_TAG.match(part):
            continue
        path.append(part)
    return path


def _most_specific(exc: ValidationError, data: Any) -> tuple[Any, list[Any]]:
    """Of the errors (one per member of a union), the one deepest in the user's data."""
    errors = exc.errors(include_url=False)
    paths = [_data_path(err["loc"], data) for err in errors]
    best = max(range(len(errors)), key=lambda i: (len(paths[i]), -i))
    return errors[best], paths[best]


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


# ----- smoke scale-down -----------------------------------------------------------------------------

def apply_smoke(spec: Spec, source: str = "spec") -> Spec:
    """The spec with its `smoke:` keys in place of its own (each top-level key replaced whole, so nothing of
    the full run leaks into the scale-down), named `<name>-smoke` so its store stays apart."""
    if spec.smoke is None:
        raise SpecError("the spec has no smoke: section to scale it down with", source=source, path="smoke")
    data = spec.model_dump(mode="json", exclude_none=True, exclude={"smoke"})
    merged = data | spec.smoke
    merged["name"] = f"{spec.name}-smoke"[:64]
    try:
        return Spec.model_validate(merged)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = list(err["loc"])
        located = (err.get("ctx") or {}).get("error")
        if isinstance(located, LocatedError):
            loc = [*loc, *located.loc]
        raise SpecError(f"after merging smoke: {err['msg'].removeprefix('Value error, ')}", source=source,
                        path=_key_path(loc) or None) from None
