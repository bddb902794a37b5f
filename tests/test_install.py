"""augworth as a user installs it: `pip install .` (non-editable) in an image built from docs/recipes/Dockerfile.

The wheel is built from exactly the files the Dockerfile copies into the image, and installed into a virtual
environment of its own whose only other path is this environment's site-packages (the dependencies): that
folder's `.pth` files are not read from there, so the editable install of the checkout, which would fill in any
module the wheel lacks, is not on the path. The commands run from a folder outside the checkout with no
PYTHONPATH, so nothing of the checkout can be imported by accident, on the driver or in Ray's workers.

Not tested here (no Docker daemon on this machine): `docker build` itself, Ray's base image, the dependency
resolution inside it (torch's CUDA builds from PyPI), and a GPU.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

DOCKERFILE = ROOT / "docs" / "recipes" / "Dockerfile"
PACKAGES = ("search_spaces", "results", "trainables", "orchestrator", "analysis")  # installed as augworth.<name>


def dockerfile_copies() -> list[str]:
    """The sources of the Dockerfile's COPY lines, relative to the build context (the checkout's root)."""
    sources = []
    for line in DOCKERFILE.read_text().splitlines():
        words = shlex.split(line) if line.startswith("COPY ") else []
        sources += [w for w in words[1:-1] if not w.startswith("--")]
    return sources


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(bin folder, wheel path) of augworth installed non-editable from a wheel built from the image's files."""
    tmp = tmp_path_factory.mktemp("install")
    context = tmp / "context"
    for source in dockerfile_copies():
        if (ROOT / source).is_dir():  # links stay links, as Docker's COPY of a folder keeps them
            shutil.copytree(ROOT / source, context / source, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            context.mkdir(exist_ok=True)
            shutil.copy2(ROOT / source, context / source)
    dist = tmp / "dist"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(dist), str(context)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = dist.glob("augworth-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()"
                                "['purelib'])"], capture_output=True, text=True, check=True).stdout.strip())
    (site / "augworth-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                          str(wheel)], capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr[-3000:]
    return venv / "bin", wheel


def outside() -> dict[str, str]:
    """An environment that cannot reach the checkout: no PYTHONPATH, no cluster."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RAY_ADDRESS")}


def test_the_wheel_holds_every_subpackage_and_every_preset_under_augworth_and_nothing_else(installed):
    _, wheel = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*"):
            relative = path.relative_to(ROOT).as_posix()
            if path.suffix in (".py", ".yaml") and "__pycache__" not in relative:
                assert f"augworth/{relative}" in names, f"augworth/{relative} is not in the wheel"
    # one name in a user's environment: another project's `analysis` or `results` cannot collide with ours
    assert {n.split("/")[0] for n in names} == {"augworth", wheel.name.split("-py3")[0] + ".dist-info"}
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "augworth = augworth.orchestrator.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def shadowing(folder: Path) -> Path:
    """A folder of modules named like augworth's packages (another project's `analysis`, a notebook's `results/`),
    each noting in `imported.txt` that something imported it. Returns the note's path."""
    note = folder / "imported.txt"
    for name in PACKAGES:
        module = folder / name / "__init__.py" if name == "results" else folder / f"{name}.py"
        module.parent.mkdir(parents=True, exist_ok=True)
        module.write_text(f"with open({str(note)!r}, 'a') as f:\n    f.write(__name__ + '\\n')\n")
    return note


def test_the_installed_augworth_runs_presets_and_a_sweep_from_outside_the_checkout(installed, tmp_path):
    bin_dir, _ = installed
    # another `analysis`, `results`, ... first on sys.path, for the driver and (inherited) for Ray's workers
    note = shadowing(tmp_path / "shadow")
    env = outside() | {"PYTHONPATH": str(tmp_path / "shadow")}
    where = subprocess.run([str(bin_dir / "python"), "-c", "import augworth.orchestrator, augworth.trainables."
                            "augmentations, augworth.trainables.datasets; print(augworth.orchestrator.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(bin_dir.parent)  # the wheel's copy, not the checkout
    presets = subprocess.run([str(bin_dir / "augworth"), "presets", "--json"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=120)
    assert presets.returncode == 0, presets.stderr
    assert {"digits_demo", "paper_fig2_policies"} <= {p["preset"] for p in json.loads(presets.stdout)}
    (tmp_path / "tiny.yaml").write_text(
        "name: wheel\ndataset: {name: digits}\nmodel: {name: small_cnn, width: 4}\n"
        "augmentations: [{policy: none}, {policy: trivialaugment}]\ndata_sizes: [40]\nseeds: [0, 1]\n"
        "budget: {steps: 4, batch_size: 8}\n"
        "eval_sets: [test, {name: corrupted, label: c_noise, options: {corruptions: [noise]}}]\n")
    sweep = subprocess.run([str(bin_dir / "augworth"), "run", "tiny.yaml", "--store", "store", "--no-progress"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert sweep.returncode == 0, sweep.stderr[-3000:]  # a worker missing a module fails its cells: exit 3
    assert "4 cells done now" in sweep.stdout
    assert len(list((tmp_path / "store" / "wheel" / "results").glob("*.parquet"))) == 4
    analyzed = subprocess.run([str(bin_dir / "augworth"), "analyze", "wheel", "--store", "store", "--json"],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert analyzed.returncode == 0 and json.loads(analyzed.stdout), analyzed.stderr[-3000:]
    assert not note.exists(), f"imported the other project's modules: {note.read_text().split()}"
    shadowed = subprocess.run([str(bin_dir / "python"), "-c", "import analysis"], cwd=tmp_path, env=env)
    assert shadowed.returncode == 0 and note.read_text() == "analysis\n"  # the shadow is importable, and noted


def test_the_dockerfile_pins_the_tested_ray_and_installs_the_checkout_non_editable():
    import ray

    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG RAY_VERSION=(\S+)$", text, re.M).group(1) == ray.__version__
    assert re.search(r"^FROM rayproject/ray:\$\{RAY_VERSION\}-py311-", text, re.M)  # the Python tests run on
    assert sys.version_info[:2] == (3, 11)
    (install,) = [line for line in text.splitlines() if line.startswith("RUN pip install")]
    assert '".[postgres,mysql]"' in install and " -e " not in install and '==${RAY_VERSION}"' in install
    assert sorted(dockerfile_copies()) == sorted(["pyproject.toml", "README.md", "augworth", *PACKAGES])
    manifests = list(yaml.safe_load_all((ROOT / "docs" / "recipes" / "rayjob.yaml").read_text()))
    job = next(m for m in manifests if m["kind"] == "RayJob")
    assert job["spec"]["rayClusterSpec"]["rayVersion"] == ray.__version__


def test_the_extras_a_cluster_user_needs_import_and_name_their_drivers():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert set(extras["postgres"] + extras["mysql"]) <= set(extras["dev"])  # so this test runs wherever tests run
    import sqlalchemy

    for url in ("postgresql+psycopg2://augworth@127.0.0.1:1/optuna", "mysql+pymysql://augworth@127.0.0.1:1/optuna"):
        sqlalchemy.create_engine(url)  # loads the dialect's driver (connects only on first use)
    import pyarrow.fs as pafs

    s3, _ = pafs.FileSystem.from_uri("s3://bucket/store?endpoint_override=127.0.0.1:1&scheme=http")
    gcs, _ = pafs.FileSystem.from_uri("gs://bucket/store")  # connects only on first use
    assert (s3.type_name, gcs.type_name) == ("s3", "gcs")
    readme = (ROOT / "README.md").read_text()
    assert "'.[postgres]'" in readme and "'.[mysql]'" in readme
