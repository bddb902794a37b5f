"""A strict YAML loader: safe, YAML 1.2 numbers, duplicate keys rejected.

Plain PyYAML follows YAML 1.1, where `5e-4` (no dot) is a string; YAML 1.2's core schema reads it as a
float, which is what people writing a learning rate mean.
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
# (so `yes`/`on` stay strings and `5e-4` is a float).
StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in {
        "tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool"}]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.copy().items()
}
StrictLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                   list("tTfF"))
StrictLoader.add_implicit_resolver("tag:yaml.org,2002:int", _INT_12, list("-+0123456789"))
StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+0123456789."))


def _construct_int(loader: StrictLoader, node: yaml.Node) -> int:
    text = loader.construct_scalar(node)
    return int(text, 0) if text.lower().startswith(("0o", "0x")) else int(text)


def _construct_mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise YamlError(f"duplicate key {key!r} (first at line {seen[key]})", key_node.start_mark.line + 1)
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


StrictLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
StrictLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)


def load_yaml(text: str) -> Any:
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - StrictLoader derives from SafeLoader
    except YamlError:
        raise
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise YamlError(f"YAML syntax error: {problem}", mark.line + 1 if mark else None) from None
