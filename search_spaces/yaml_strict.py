"""A strict YAML loader: safe, YAML 1.2 numbers, duplicate keys rejected.

Plain PyYAML follows YAML 1.1, where `5e-4` (no dot) is a string; YAML 1.2's core schema reads it as a
float, which is what people writing a learning rate mean. `dump_yaml` writes what `load_yaml` reads back
unchanged (a string such as "1e3" is quoted).
"""

from __future__ import annotations

import re
from typing import Any

import yaml

_FLOAT_12 = re.compile(
    r"""^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_INT_12 = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")


class YamlError(ValueError):
    """Syntax error or duplicate key; `.line` is 1-based where known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


class StrictLoader(yaml.SafeLoader):
    pass


# Replace YAML 1.1's implicit int/float/bool resolvers with YAML 1.2 core-schema ones
# (so `yes`/`on` stay strings and `5e-4` is a float). YAML 1.2's core schema has no timestamps either:
# `name: 2024-06-01` is a string, not a datetime.date.
StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in {
        "tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool",
        "tag:yaml.org,2002:timestamp"}]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.copy().items()
}
StrictLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                   list("tTfF"))
StrictLoader.add_implicit_resolver("tag:yaml.org,2002:int", _INT_12, list("-+0123456789"))
StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+0123456789."))


def _construct_int(loader: StrictLoader, node: yaml.ScalarNode) -> int:
    text = loader.construct_scalar(node)
    try:
        return int(text, 0) if text.lower().startswith(("0o", "0x")) else int(text)
    except ValueError:  # an explicit `!!int` on something that is not one
        raise YamlError(f"not an integer: {text!r}", node.start_mark.line + 1) from None


def _construct_float(loader: StrictLoader, node: yaml.ScalarNode) -> float:
    try:
        return loader.construct_yaml_float(node)
    except ValueError:  # an explicit `!!float` on something that is not one
        raise YamlError(f"not a float: {loader.construct_scalar(node)!r}", node.start_mark.line + 1) from None


def _construct_mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
        except TypeError:  # a list or mapping as a key (`? [a]`)
            raise YamlError(f"a key must be a scalar, got {type(key).__name__}",
                            key_node.start_mark.line + 1) from None
        if duplicate:
            raise YamlError(f"duplicate key {key!r} (first at line {seen[key]})", key_node.start_mark.line + 1)
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


StrictLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
StrictLoader.add_constructor("tag:yaml.org,2002:float", _construct_float)
StrictLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)


class StrictDumper(yaml.SafeDumper):
    """SafeDumper that also quotes strings YAML 1.2 would read as numbers ("1e3", "0o17"), so that
    `load_yaml(dump_yaml(x)) == x`. (YAML 1.1's resolvers stay: quoting "yes" too is harmless.)"""


StrictDumper.yaml_implicit_resolvers = {
    first: list(resolvers) for first, resolvers in yaml.SafeDumper.yaml_implicit_resolvers.items()}
StrictDumper.add_implicit_resolver("tag:yaml.org,2002:int", _INT_12, list("-+0123456789"))
StrictDumper.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+0123456789."))


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=StrictDumper, sort_keys=False)


def load_yaml(text: str) -> Any:
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - StrictLoader derives from SafeLoader
    except YamlError:
        raise
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise YamlError(f"YAML syntax error: {problem}", mark.line + 1 if mark else None) from None
    except (ValueError, TypeError, AttributeError, RecursionError) as exc:  # e.g. a bad `!!timestamp` value
        first = (str(exc).splitlines() or [""])[0]
        raise YamlError(f"cannot read the YAML: {exc.__class__.__name__}: {first}") from None
