"""The examples in the README and docs/ as a user copies them: every Python block imports only `augworth.` names
and those imports work, every `python -m` names a module that exists, and the README's plugin runs as one."""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys

from conftest import CLI, ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PACKAGES = ("search_spaces", "results", "trainables", "orchestrator", "analysis")
BLOCKS = [(page.name, block) for page in PAGES for block in re.findall(r"```python\n(.*?)```", page.read_text(), re.S)]


def without_pythonpath() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RAY_ADDRESS")}


def test_every_python_block_imports_our_names_under_augworth_and_the_imports_work(tmp_path):
    imports = []
    for page, block in BLOCKS:
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.Import | ast.ImportFrom):
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                bare = [m for m in modules if m.split(".")[0] in PACKAGES]
                assert not bare, f"{page}: {ast.unparse(node)} (ours are under augworth.)"
                imports.append(ast.unparse(node))
    assert len(BLOCKS) >= 5 and any("augworth.analysis" in line for line in imports)
    # a fresh interpreter outside the checkout, as a notebook would run them
    ran = subprocess.run([sys.executable, "-c", "\n".join(imports)], cwd=tmp_path, env=without_pythonpath(),
                         capture_output=True, text=True, timeout=180)
    assert ran.returncode == 0, ran.stderr[-2000:]


def test_every_python_dash_m_in_the_docs_names_a_module_that_exists():
    named = {m for page in PAGES for m in re.findall(r"python -m\s+([\w.]+)", page.read_text())}
    assert "augworth.trainables.train_cli" in named
    assert not [m for m in named if m.split(".")[0] in PACKAGES]
    missing = [m for m in sorted(named) if importlib.util.find_spec(m) is None]
    assert not missing, missing


def test_the_readmes_plugin_registers_an_augmentation_that_a_sweep_plans_and_applies(tmp_path):
    (plugin,) = [block for page, block in BLOCKS if page == "README.md" and "@AUGMENTATIONS.register" in block]
    (tmp_path / "my_policies.py").write_text(plugin)
    (tmp_path / "spec.yaml").write_text(
        "name: plugged\ndataset: {name: digits}\nmodel: {name: small_cnn, width: 4}\n"
        "augmentations: [{policy: none}, {policy: invert, strength: 1}]\ndata_sizes: [40]\nseeds: [0]\n"
        "budget: {steps: 4, batch_size: 8}\nexecution: {plugins: [my_policies]}\n")
    env = without_pythonpath() | {"PYTHONPATH": str(tmp_path)}
    planned = subprocess.run([*CLI, "run", "spec.yaml", "--store", "store", "--dry-run"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=180)
    assert planned.returncode == 0, planned.stderr[-2000:]
    assert "2 cells" in planned.stdout and not (tmp_path / "store").exists()  # an unknown policy exits 2
    code = ("import torch, my_policies\nfrom augworth.trainables.augmentations import create_augmentation\n"
            "x = torch.rand(2, 3, 8, 8)\ny = create_augmentation('invert', 1.0)(x, torch.Generator())\n"
            "print(torch.allclose(y, 1 - x))")
    applied = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=180)
    assert applied.stdout.strip() == "True", applied.stderr[-2000:]
