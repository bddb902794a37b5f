"""The presets shipped in `search_spaces/presets/` (`augworth presets`, `augworth run PRESET`)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .spec import SpecError


def preset_names() -> list[str]:
    folder = resources.files("augworth.search_spaces") / "presets"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def preset_path(name: str) -> Path:
    if name not in preset_names():  # a listed name only: nothing like '../x' reaches outside the folder
        raise SpecError(f"unknown preset {name!r} (valid: {', '.join(preset_names())})")
    return Path(str(resources.files("augworth.search_spaces") / "presets" / f"{name}.yaml"))
