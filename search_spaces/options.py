"""A registered component's options (a data set's, an eval set's) in one canonical form.

Options reach the code by several roads: a spec's YAML, the frozen spec read back from the store, an
`--eval-set` mapping on the command line, pairs travelling to a worker through Ray. The same options must look
the same on every road (a list is not a tuple, keys come in any order, `5e-4` is `0.0005`), or a sweep compares
its own frozen spec with itself and finds "two test sets". So every road goes through `canonical_options`:
its JSON text (keys sorted, lists as lists, nothing else) is what the frozen spec is written from, what caches
key on, what an eval set's fingerprint hashes and what two specs are compared by; `plain_options` gives the
values back as plain JSON data (lists and dicts) for the component itself.

Numbers keep their type: `3` and `3.0` are different options (YAML and the frozen spec keep them apart too).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

OptionsKey = str  # canonical JSON text of a component's options: hashable, comparable, what caches key on


def _plain(value: Any, where: str) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"option {where} must be finite, got {value!r}")
    if value is None or isinstance(value, str | bool | int | float):
        return value
    raise ValueError(f"option {where} must be a string, number, boolean, list or mapping, got "
                     f"{type(value).__name__}")


def canonical_options(options: Mapping[str, Any] | Iterable[tuple[str, Any]] | OptionsKey | None) -> OptionsKey:
    """The canonical text of `options`: a mapping, (name, value) pairs, or a text this function made."""
    if isinstance(options, str):
        return canonical_options(json.loads(options))
    pairs = options.items() if isinstance(options, Mapping) else (options or ())
    return json.dumps({str(k): _plain(v, str(k)) for k, v in pairs}, sort_keys=True, separators=(",", ":"),
                      allow_nan=False)


def plain_options(options: Mapping[str, Any] | Iterable[tuple[str, Any]] | OptionsKey | None) -> dict[str, Any]:
    """The options as plain JSON data (keys sorted; lists and dicts), what a component is called with."""
    result: dict[str, Any] = json.loads(canonical_options(options))
    return result


def same_options(a: Any, b: Any) -> bool:
    """Whether two spellings of options are the same options."""
    return canonical_options(a) == canonical_options(b)
