"""Run first in a submitted job (`augworth submit`): does the cluster's Python have what augworth imports?

`python -m augworth.orchestrator.preflight MODULE...` finds each module without importing it and, where some are
missing, says in one line which (and which Python lacks them), exit 2, before `augworth.orchestrator.cli` would die
on its first import with a traceback. Only the standard library here: this runs where the dependencies may be missing.
"""

from __future__ import annotations

import importlib.util
import sys


def missing(modules: list[str]) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def main(argv: list[str]) -> int:
    lacking = missing(argv)
    if sys.version_info < (3, 11):  # noqa: UP036  (the cluster's Python may be older than ours)
        lacking.insert(0, f"Python >= 3.11 (it is {sys.version.split()[0]})")
    if not lacking:
        return 0
    print(f"augworth: the cluster's Python ({sys.executable}) lacks {', '.join(lacking)}: install augworth's "
          "dependencies there (`pip install .` from a checkout, or the image of docs/recipes/Dockerfile), or start "
          "Ray from the environment that has them", file=sys.stderr, flush=True)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
