"""The package layout: imports between augworth's packages flow one way, and modules stay small.

    search_spaces <- results <- trainables <- orchestrator,   results <- analysis <- orchestrator

Every import counts, also one inside a function; `bench/` and `tests/` may import anything of ours, but only under
`augworth.`: the packages stay at the top of the repository, `augworth/` links to them, and the wheel installs them
under that one name, so a bare `analysis` is somebody else's.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("search_spaces", "results", "trainables", "analysis", "orchestrator")
# what each package may import of ours (besides itself)
ALLOWED = {
    "search_spaces": set(),
    "results": {"search_spaces"},
    "trainables": {"search_spaces", "results"},
    "analysis": {"search_spaces", "results"},
    "orchestrator": {"search_spaces", "results", "trainables", "analysis"},
}
# third-party packages a package must never import, even lazily
FORBIDDEN = {
    "search_spaces": {"ray", "torch", "torchvision", "pyarrow", "duckdb", "pandas"},
    "results": {"ray", "torch", "torchvision"},
    "analysis": {"ray", "torch", "torchvision"},
}
MAX_LINES = 450


def modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def imported(path: Path) -> tuple[set[str], set[str]]:
    """(our packages the module imports, the top-level names of everything else it imports). Ours: under
    `augworth.` (`augworth.analysis.exchange`, `from augworth import analysis`), or relative (its own package)."""
    ours, others = set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:
            ours.add(path.relative_to(ROOT).parts[0])
            continue
        elif isinstance(node, ast.ImportFrom):
            names = [f"augworth.{a.name}" for a in node.names] if node.module == "augworth" else [node.module or ""]
        else:
            continue
        for name in names:
            top, _, rest = name.partition(".")
            if top != "augworth":
                others.add(top)
            elif rest:
                ours.add(rest.partition(".")[0])
    return ours, others


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_flow_one_way(path):
    package = path.relative_to(ROOT).parts[0]
    ours, others = imported(path)
    ours -= {package}
    assert ours <= ALLOWED[package], f"{package} may not import {sorted(ours - ALLOWED[package])}"
    heavy = others & FORBIDDEN.get(package, set())
    assert not heavy, f"{package} may not import {sorted(heavy)}"


@pytest.mark.parametrize("path", [*modules(), *sorted((ROOT / "tests").rglob("*.py")), *sorted(
    (ROOT / "bench").rglob("*.py"))], ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_imports_our_packages_by_their_bare_names(path):
    bare = imported(path)[1] & set(PACKAGES)
    assert not bare, f"import augworth.{sorted(bare)[0]}, not {sorted(bare)[0]}: installed, only augworth is ours"


def test_augworth_is_the_five_packages_linked_from_the_top_of_the_repository():
    """`augworth/` holds its `__init__.py` and one relative link per package (git keeps links; so do a wheel built
    from the checkout, as plain files, and a Dockerfile's COPY of both folders)."""
    entries = {p.name: p for p in (ROOT / "augworth").iterdir() if p.name != "__pycache__"}
    assert set(entries) == {"__init__.py", *PACKAGES}
    for package in PACKAGES:
        link = entries[package]
        assert link.is_symlink() and str(link.readlink()) == f"../{package}", f"augworth/{package}"
        assert link.resolve() == (ROOT / package).resolve()
    init = ast.parse((ROOT / "augworth" / "__init__.py").read_text())
    assert not [n for n in ast.walk(init) if isinstance(n, ast.Import | ast.ImportFrom)]  # `import augworth` is free


def test_the_packages_form_a_dag():
    edges = {package: set() for package in PACKAGES}
    for path in modules():
        package = path.relative_to(ROOT).parts[0]
        edges[package] |= imported(path)[0] - {package}
    seen, done = set(), set()

    def visit(package: str, trail: tuple[str, ...]) -> None:
        assert package not in seen - done, f"import cycle: {' -> '.join((*trail, package))}"
        if package in done:
            return
        seen.add(package)
        for target in sorted(edges[package]):
            visit(target, (*trail, package))
        done.add(package)

    for package in PACKAGES:
        visit(package, ())


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_stay_small(path):
    name = str(path.relative_to(ROOT))
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines (at most {MAX_LINES}: split it where its contracts part)"


# ----- no module imports its importer (timm's registries: a package's __init__ imports its built-ins) -------

def module_name(path: Path) -> str:
    parts = ("augworth", *path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def run_as_script(node: ast.AST) -> bool:
    # `if __name__ == "__main__":` runs only as `python -m`, where the module is __main__, not itself
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__")


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """Our modules that `path` imports, by dotted name (`from .x import y` counts x, and y where y is a module)."""
    here = module_name(path)
    package = here if is_package(path) else here.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    script_only = {id(n) for top in ast.walk(tree) if run_as_script(top) for n in ast.walk(top)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in script_only:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            target = (f"{base}.{node.module}" if node.module else base) if node.level else node.module or ""
            found.add(target)
            found |= {f"{target}.{alias.name}" for alias in node.names}
    return found & known


def test_no_module_imports_its_importer():
    paths = modules()
    known = {module_name(p) for p in paths}
    edges = {module_name(p): imported_modules(p, known) - {module_name(p)} for p in paths}
    done: set[str] = set()

    def visit(name: str, trail: tuple[str, ...]) -> None:
        assert name not in trail, f"import cycle between modules: {' -> '.join((*trail[trail.index(name):], name))}"
        if name in done:
            return
        for target in sorted(edges[name]):
            visit(target, (*trail, name))
        done.add(name)

    for name in sorted(edges):
        visit(name, ())


def test_command_modules_import_no_other_command_module_and_every_command_is_registered_in_cli():
    """One module per group of verbs, each importing only what lies below the command line; `cli.py` lists them."""
    from augworth.orchestrator.cli import COMMANDS, app

    command_modules = sorted({c.__module__ for c in COMMANDS})
    known = {module_name(p) for p in modules()}
    for name in command_modules:
        path = ROOT / Path(*name.split(".")[1:]).with_suffix(".py")  # augworth.<package>.<module>
        others = imported_modules(path, known) & (set(command_modules) - {name})
        assert not others, f"{name} imports the command module(s) {sorted(others)}"
    registered = {c.callback.__name__ for c in app.registered_commands}
    assert registered == {c.__name__ for c in COMMANDS} and len(app.registered_commands) == len(COMMANDS)


def test_no_private_name_is_imported_from_another_module():
    crossing = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                crossing += [f"{path.relative_to(ROOT)}: {alias.name} from {node.module}" for alias in node.names
                             if alias.name.startswith("_") and not alias.name.startswith("__")]
    assert not crossing, crossing


def test_only_the_store_and_the_sweeps_lock_reach_into_the_stores_file_layout():
    # results/store.py: Store's public methods are its interface; `store.layout` is results/' own and the lock's
    allowed = {"results", "orchestrator/lock.py"}
    reaching = [str(path.relative_to(ROOT)) for path in modules()
                if ".layout." in path.read_text() and not ({path.relative_to(ROOT).parts[0],
                                                            str(path.relative_to(ROOT))} & allowed)]
    assert not reaching, reaching
