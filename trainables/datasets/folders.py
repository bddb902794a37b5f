"""Image folders: CINIC-10 as distributed (with the paper's recipe) and any `train/<class>/*`,
`test/<class>/*` tree, decoded once and cached (files.py)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .core import DATASETS, DataSet, int_option, reject_options
from .files import (
    CIFAR10_CLASSES,
    ImageFile,
    arrays_to_dataset,
    cache_folder,
    cache_key,
    cached,
    decode_images,
    list_class_folder,
    missing_file,
    no_download,
    option_choice,
    require_files,
    root_folder,
)

# ----- CINIC-10 -------------------------------------------------------------------------------------

CINIC_LAYOUT = "CINIC-10 as distributed: <root>/{train,valid,test}/<class>/*.png, CIFAR-10's ten classes"
# The paper's code (JonasGeiping/dataaugs, dataaug/data/datasets.py, class CINIC10) drops every file whose name
# contains "cifar" (cifar10-<split>-<n>.png: the 60k images CINIC-10 took from CIFAR-10), keeps the first of
# files with equal md5 in sorted path order, shuffles with torch.randperm under a generator seeded 233 and
# holds out the last 10,000.
CINIC_CIFAR_MARK = "cifar"
PAPER_SHUFFLE_SEED = 233


def _list_cinic(root: Path, splits: Sequence[str]) -> list[ImageFile]:
    files = []
    for split in splits:
        for label, cls in enumerate(CIFAR10_CLASSES):
            require_files("cinic10", [root / split / cls], CINIC_LAYOUT)
            files += list_class_folder(root, split, cls, label, (".png",))
    return sorted(files, key=lambda f: f.rel)


def _paper_recipe(root: Path, files: list[ImageFile], holdout: int) -> dict[str, np.ndarray]:
    """Geiping et al.'s CINIC-10 as their code builds it: all three splits (sorted by path: test, train,
    valid) without the CIFAR-10 part, each distinct file (md5 of its bytes) once, the first copy kept; then
    `torch.randperm(n, generator=torch.Generator().manual_seed(233))`, the last `holdout` held out as the
    in-distribution test set. (Unreadable files raise here; the paper's code skips them silently.)"""
    kept = [f for f in files if CINIC_CIFAR_MARK not in f.rel.rsplit("/", 1)[-1]]
    seen: set[str] = set()
    unique = []
    for f in kept:  # files sorted by path: the first copy stays
        digest = hashlib.md5((root / f.rel).read_bytes(), usedforsecurity=False).hexdigest()
        if digest not in seen:
            seen.add(digest)
            unique.append(f)
    if holdout >= len(unique):
        raise ValueError(f"cinic10: holdout {holdout} leaves no pool ({len(unique)} distinct non-CIFAR images)")
    x = _cinic_images(root, unique)
    order = torch.randperm(len(unique), generator=torch.Generator().manual_seed(PAPER_SHUFFLE_SEED)).numpy()
    y = np.asarray([f.label for f in unique], dtype=np.int64)
    pool, test = order[:-holdout], order[-holdout:]
    return {"train_x": x[pool], "train_y": y[pool], "test_x": x[test], "test_y": y[test],
            "classes": np.asarray(CIFAR10_CLASSES)}


def _cinic_images(root: Path, files: list[ImageFile]) -> np.ndarray:
    x = decode_images("cinic10", root, files, hint=" (CINIC-10 images are 32x32)")
    if x.shape[2:] != (32, 32):
        raise ValueError(f"cinic10: {root / files[0].rel} is {x.shape[3]}x{x.shape[2]}, CINIC-10 images are 32x32")
    return x


def _split_arrays(train: list[ImageFile], test: list[ImageFile], x: np.ndarray) -> dict[str, np.ndarray]:
    """x: the decoded images of train + test, in that order."""
    y = np.asarray([f.label for f in train + test], dtype=np.int64)
    n = len(train)
    return {"train_x": x[:n], "train_y": y[:n], "test_x": x[n:], "test_y": y[n:]}


@DATASETS.register("cinic10", doc="CINIC-10 PNG folders; recipe: standard (train/test) | paper (no CIFAR, dedup)",
                   image_size=32)
def cinic10(root: str | None = None, download: bool = False, *, recipe: str = "standard",
            holdout: int | None = None, cache_dir: str | None = None, **options: Any) -> DataSet:
    """CINIC-10 (Darlow et al. 2018), labels in CIFAR-10's order.

    recipe standard: pool = train (90k), test = test (90k). recipe paper: the paper's pool of ~210k ImageNet
    images (see `_paper_recipe`), `holdout` (default 10,000) of them held out as the test set.
    """
    reject_options("cinic10", options, ("recipe", "holdout", "cache_dir"))
    no_download("cinic10", download)
    option_choice("cinic10", "recipe", recipe, ("standard", "paper"))
    if holdout is not None and recipe != "paper":
        raise ValueError("cinic10: option holdout applies to recipe: paper only (standard tests on the test split)")
    holdout = int_option("cinic10", "holdout", 10_000 if holdout is None else holdout, 1)
    path = root_folder("cinic10", root, CINIC_LAYOUT)
    if recipe == "paper":
        files = _list_cinic(path, ("train", "valid", "test"))
        settings: dict[str, Any] = {"recipe": recipe, "holdout": holdout}

        def build() -> dict[str, np.ndarray]:
            return _paper_recipe(path, files, holdout)
    else:
        train, test = _list_cinic(path, ("train",)), _list_cinic(path, ("test",))
        files = train + test
        settings = {"recipe": recipe}

        def build() -> dict[str, np.ndarray]:
            return _split_arrays(train, test, _cinic_images(path, files)) | {"classes": np.asarray(CIFAR10_CLASSES)}
    key = cache_key("cinic10", settings, files)
    return arrays_to_dataset("cinic10", cached("cinic10", key, cache_folder(cache_dir), build))


# ----- any image folder -----------------------------------------------------------------------------

IMAGEFOLDER_LAYOUT = "<root>/train/<class>/<image> and <root>/test/<class>/<image> (or val/ for test)"


def _class_folders(path: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))


@DATASETS.register("imagefolder", doc="your images: root/train/<class>/*, root/test/<class>/* (or val/)")
def imagefolder(root: str | None = None, download: bool = False, *, image_size: int | None = None,
                grayscale: bool = False, cache_dir: str | None = None, **options: Any) -> DataSet:
    """Classes are the sorted folder names under train/; test/ (or val/) must hold the same ones.

    Without image_size every image must already have one square size; with it, each is resized (bilinear,
    antialiased) to image_size x image_size. RGB, or one channel with grayscale: true.
    """
    reject_options("imagefolder", options, ("image_size", "grayscale", "cache_dir"))
    no_download("imagefolder", download)
    if image_size is not None:
        int_option("imagefolder", "image_size", image_size, 1)
    if not isinstance(grayscale, bool):
        raise ValueError(f"imagefolder: option grayscale must be true or false, not {grayscale!r}")
    path = root_folder("imagefolder", root, IMAGEFOLDER_LAYOUT)
    require_files("imagefolder", [path / "train"], IMAGEFOLDER_LAYOUT)
    test_split = next((s for s in ("test", "val") if (path / s).is_dir()), None)
    if test_split is None:
        raise missing_file("imagefolder", path / "test", IMAGEFOLDER_LAYOUT)
    classes = _class_folders(path / "train")
    if not classes:
        raise ValueError(f"imagefolder: no class folders in {path / 'train'} (expected {IMAGEFOLDER_LAYOUT})")
    test_classes = _class_folders(path / test_split)
    if test_classes != classes:
        only_train, only_test = sorted(set(classes) - set(test_classes)), sorted(set(test_classes) - set(classes))
        raise ValueError(f"imagefolder: {path / test_split} must hold the same class folders as {path / 'train'} "
                         f"(only in train: {only_train or 'none'}; only in {test_split}: {only_test or 'none'})")
    from torchvision.datasets.folder import IMG_EXTENSIONS  # on first use: seconds to import

    extensions = tuple(IMG_EXTENSIONS)
    train, test = [], []
    for label, cls in enumerate(classes):
        found = sorted(list_class_folder(path, "train", cls, label, extensions), key=lambda f: f.rel)
        if not found:
            raise ValueError(f"imagefolder: no images in {path / 'train' / cls} (extensions: {', '.join(extensions)})")
        train += found
        test += sorted(list_class_folder(path, test_split, cls, label, extensions), key=lambda f: f.rel)
    mode = "L" if grayscale else "RGB"

    def build() -> dict[str, np.ndarray]:
        hint = "; set the option image_size to resize every image to one square side"
        # one decode of both splits: every image must come out one size
        arrays = _split_arrays(train, test, decode_images("imagefolder", path, train + test, mode, image_size, hint))
        h, w = arrays["train_x"].shape[2:]
        if h != w:
            raise ValueError(f"imagefolder: images are {w}x{h}, not square{hint}")
        return arrays | {"classes": np.asarray(classes)}

    settings = {"image_size": image_size, "grayscale": grayscale, "classes": classes}
    key = cache_key("imagefolder", settings, train + test)
    return arrays_to_dataset("imagefolder", cached("imagefolder", key, cache_folder(cache_dir), build))
