"""CIFAR-10 and CIFAR-100 (torchvision's python pickles), and the eval sets for models trained on CIFAR-10-like
data: cifar10_test, cifar10c (the released .npy files), cifar10_1. Everything is returned as uint8 (N, C, H, W).
"""

from __future__ import annotations

import functools
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .core import DATASETS, EVAL_SETS, DataSet, Tensor, int_option, make_dataset, reject_options
from .files import (
    label_tensor,
    nchw,
    option_choice,
    require_files,
    root_folder,
)

# ----- CIFAR-10 and CIFAR-100: torchvision's python format ------------------------------------------

@functools.cache
def _readers() -> dict[str, Any]:
    """torchvision's CIFAR readers, trusting files that exist (made on first use: importing torchvision costs
    seconds, which a sweep on other data need not pay in every worker).

    torchvision checks every file's md5 against the official release, so a re-packed copy (or the small files
    the tests write) reads as "corrupted"; what was actually read is recorded by the data set's fingerprint.
    Only the files of the split asked for are checked, so an eval set can use a folder holding the test batch.
    """
    import torchvision.datasets

    class CIFAR10Files(torchvision.datasets.CIFAR10):
        @classmethod
        def split_files(cls, root: str | Path, train: bool) -> list[Path]:
            """The split's batch files, then the meta file."""
            names = [f for f, _ in (cls.train_list if train else cls.test_list)] + [cls.meta["filename"]]
            return [Path(root) / cls.base_folder / f for f in names]

        def _check_integrity(self) -> bool:
            return all(path.is_file() for path in self.split_files(self.root, self.train))

        def _load_meta(self) -> None:
            with open(Path(self.root) / self.base_folder / self.meta["filename"], "rb") as f:
                meta = pickle.load(f, encoding="latin1")
            self.classes = meta[self.meta["key"]]
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    class CIFAR100Files(CIFAR10Files, torchvision.datasets.CIFAR100):
        pass

    return {"cifar10": CIFAR10Files, "cifar100": CIFAR100Files}


def _read_cifar(name: str, kind: str, root: str | None, train: bool, download: bool, layout: str) -> Any:
    """One split read by torchvision's reader of `kind` (cifar10 or cifar100)."""
    cls = _readers()[kind]
    if root is None:
        raise ValueError(f"{name}: root is required (the folder holding {layout})")
    path = Path(root).expanduser()
    if not download:  # our own message for a missing file: torchvision's names no path
        require_files(name, cls.split_files(path, train), layout)
    return cls(str(path), train=train, download=download)


CIFAR10_LAYOUT = ("torchvision's CIFAR-10 python format under root: "
                  "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}")
CIFAR100_LAYOUT = "torchvision's CIFAR-100 python format under root: cifar-100-python/{train,test,meta}"


@DATASETS.register("cifar10", doc="CIFAR-10: 50k train (the pool), 10k test; torchvision's python format",
                   image_size=32)
def cifar10(root: str | None = None, download: bool = False, **options: Any) -> DataSet:
    reject_options("cifar10", options)
    train = _read_cifar("cifar10", "cifar10", root, True, download, CIFAR10_LAYOUT)
    test = _read_cifar("cifar10", "cifar10", root, False, False, CIFAR10_LAYOUT)
    k = len(train.classes)
    return make_dataset("cifar10", nchw(train.data), label_tensor("cifar10", train.targets, k),
                        nchw(test.data), label_tensor("cifar10", test.targets, k), num_classes=k)


def _coarse_labels(split: Any) -> list[int]:
    """torchvision reads only the fine labels; the coarse ones sit beside them in the same pickles."""
    labels: list[int] = []
    for path in split.split_files(split.root, split.train)[:-1]:  # the last is the meta file
        with open(path, "rb") as f:
            labels.extend(pickle.load(f, encoding="latin1")["coarse_labels"])
    return labels


@DATASETS.register("cifar100", doc="CIFAR-100: 50k train (the pool), 10k test; option labels: fine|coarse",
                   image_size=32)
def cifar100(root: str | None = None, download: bool = False, *, labels: str = "fine", **options: Any) -> DataSet:
    reject_options("cifar100", options, ("labels",))
    option_choice("cifar100", "labels", labels, ("fine", "coarse"))
    train = _read_cifar("cifar100", "cifar100", root, True, download, CIFAR100_LAYOUT)
    test = _read_cifar("cifar100", "cifar100", root, False, False, CIFAR100_LAYOUT)
    if labels == "fine":
        k, train_y, test_y = len(train.classes), train.targets, test.targets
    else:
        with open(train.split_files(train.root, True)[-1], "rb") as f:
            k = len(pickle.load(f, encoding="latin1")["coarse_label_names"])
        train_y, test_y = _coarse_labels(train), _coarse_labels(test)
    return make_dataset("cifar100", nchw(train.data), label_tensor("cifar100", train_y, k),
                        nchw(test.data), label_tensor("cifar100", test_y, k), num_classes=k)


# ----- eval sets for models trained on CIFAR-10-like data ---------------------------------------------

def _check_cifar10_like(name: str, data: DataSet) -> None:
    h, w = data.train_x.shape[-2:]
    if data.num_classes != 10 or data.channels != 3 or (h, w) != (32, 32):
        raise ValueError(f"eval set {name} needs a data set of CIFAR-10's shape (10 classes, 3 channels, 32x32); "
                         f"{data.name} has {data.num_classes} classes, {data.channels} channels, {w}x{h}")


def _load_npy(name: str, path: Path, layout: str, mmap: bool = False) -> np.ndarray:
    require_files(name, [path], layout)
    try:  # never unpickle: a released .npy holds plain arrays
        return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except ValueError as exc:
        raise ValueError(f"{name}: cannot read {path} as a plain .npy array ({exc})") from None


def _check_images(name: str, path: Path, x: np.ndarray, n: int | None = None) -> None:
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (32, 32, 3) or (n is not None and len(x) != n):
        want = f"({n if n is not None else 'N'}, 32, 32, 3) uint8"
        raise ValueError(f"{name}: {path} holds {x.dtype} {tuple(x.shape)}, expected {want}")


@EVAL_SETS.register("cifar10_test", doc="CIFAR-10's 10k test images (root holds cifar-10-batches-py)")
def cifar10_test(data: DataSet, root: str | None = None, **options: Any) -> tuple[Tensor, Tensor]:
    """For models trained on another CIFAR-10-like set (CINIC-10): CIFAR-10's own test batch."""
    reject_options("cifar10_test", options)
    _check_cifar10_like("cifar10_test", data)
    test = _read_cifar("cifar10_test", "cifar10", root, False, False, CIFAR10_LAYOUT)
    return nchw(test.data), label_tensor("cifar10_test", test.targets, 10)


CIFAR10C_CORRUPTIONS = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
                        "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform",
                        "pixelate", "jpeg_compression")  # the 15 of Hendrycks & Dietterich's benchmark
CIFAR10C_EXTRA = ("speckle_noise", "gaussian_blur", "spatter", "saturate")  # released too, held out in the paper
CIFAR10C_LAYOUT = "the released CIFAR-10-C: <root>/<corruption>.npy (5 severities x N, 32, 32, 3) and labels.npy"


@EVAL_SETS.register("cifar10c", corruptions=CIFAR10C_CORRUPTIONS,
                    doc="CIFAR-10-C at one severity (1..5, default 3); option corruptions: a list")
def cifar10c(data: DataSet, root: str | None = None, *, severity: int = 3,
             corruptions: Sequence[str] | str | None = None, **options: Any) -> tuple[Tensor, Tensor]:
    """Every listed corruption of CIFAR-10's test set at one severity, one after another.

    Default corruptions: the 15 benchmark ones, all required, whatever else the folder holds (so that what a
    label means never depends on which files happen to be there); the 4 extra ones of a full download only
    when listed. Rows (s-1)N..sN of each file are severity s (the files stack 1..5).
    """
    reject_options("cifar10c", options, ("severity", "corruptions"))
    _check_cifar10_like("cifar10c", data)
    int_option("cifar10c", "severity", severity, 1, 5)
    path = root_folder("cifar10c", root, CIFAR10C_LAYOUT)
    if corruptions is None:
        names = list(CIFAR10C_CORRUPTIONS)
        missing = [f"{c}.npy" for c in names if not (path / f"{c}.npy").is_file()]
        if missing:
            raise FileNotFoundError(f"cifar10c: {len(missing)} of the 15 benchmark corruptions not found under "
                                    f"{path}: {', '.join(missing)} (expected {CIFAR10C_LAYOUT})")
    else:
        names = [corruptions] if isinstance(corruptions, str) else list(corruptions)
        if not names or not all(isinstance(c, str) for c in names) or len(set(names)) != len(names):
            raise ValueError(f"cifar10c: option corruptions must be a non-empty list of distinct names, "
                             f"e.g. {', '.join(CIFAR10C_CORRUPTIONS[:3])}; got {corruptions!r}")
    require_files("cifar10c", [path / f"{c}.npy" for c in names], CIFAR10C_LAYOUT)
    labels = _load_npy("cifar10c", path / "labels.npy", CIFAR10C_LAYOUT)
    if labels.ndim != 1 or len(labels) % 5:
        raise ValueError(f"cifar10c: {path / 'labels.npy'} holds {tuple(labels.shape)}, expected (5 x N,)")
    n = len(labels) // 5
    rows = slice((severity - 1) * n, severity * n)
    x = np.empty((len(names) * n, 3, 32, 32), dtype=np.uint8)
    for i, c in enumerate(names):
        images = _load_npy("cifar10c", path / f"{c}.npy", CIFAR10C_LAYOUT, mmap=True)  # reads one severity only
        _check_images("cifar10c", path / f"{c}.npy", images, len(labels))
        x[i * n : (i + 1) * n] = images[rows].transpose(0, 3, 1, 2)
    y = label_tensor("cifar10c", labels[rows], 10)
    return torch.from_numpy(x), y.repeat(len(names))


CIFAR10_1_LAYOUT = "CIFAR-10.1 as released: <root>/cifar10.1_<version>_data.npy and cifar10.1_<version>_labels.npy"


@EVAL_SETS.register("cifar10_1", doc="CIFAR-10.1 (Recht et al. 2018), 2,000 new test images; option version: v6|v4")
def cifar10_1(data: DataSet, root: str | None = None, *, version: str = "v6", **options: Any
              ) -> tuple[Tensor, Tensor]:
    reject_options("cifar10_1", options, ("version",))
    option_choice("cifar10_1", "version", version, ("v6", "v4"))
    _check_cifar10_like("cifar10_1", data)
    path = root_folder("cifar10_1", root, CIFAR10_1_LAYOUT)
    images_path = path / f"cifar10.1_{version}_data.npy"
    images = _load_npy("cifar10_1", images_path, CIFAR10_1_LAYOUT)
    labels = _load_npy("cifar10_1", path / f"cifar10.1_{version}_labels.npy", CIFAR10_1_LAYOUT)
    _check_images("cifar10_1", images_path, images, len(labels))
    return nchw(images), label_tensor("cifar10_1", labels, 10)
