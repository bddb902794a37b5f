"""The real image data sets and eval sets, read from their on-disk formats as distributed.

Data sets (`DATASETS`): cifar10, cifar100 (torchvision's python pickles), cinic10 (PNG folders, with the
paper's recipe), imagefolder (any `train/<class>/*`, `test/<class>/*` tree). Eval sets (`EVAL_SETS`):
cifar10_test, cifar10c (the released .npy files), cifar10_1. Everything is returned as uint8 (N, C, H, W).

Decoding a folder of PNGs takes minutes at CINIC-10's 270k files, and every Ray worker loads the data set,
so the decoded arrays are cached in one .npz per (format, options, file list with sizes and mtimes).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import warnings
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision.datasets
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS

from .datasets import DATASETS, EVAL_SETS, DataSet, Tensor, int_option, make_dataset, reject_options

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _missing(name: str, path: Path, layout: str) -> FileNotFoundError:
    return FileNotFoundError(f"{name}: {path} not found (expected {layout})")


def _root(name: str, root: str | None, layout: str) -> Path:
    if root is None:
        raise ValueError(f"{name}: root is required (the folder holding {layout})")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise _missing(name, path, layout)
    return path


def _require(name: str, paths: Sequence[Path], layout: str) -> None:
    for path in paths:
        if not path.exists():
            raise _missing(name, path, layout)


def _no_download(name: str, download: bool) -> None:
    if download:
        raise ValueError(f"{name}: download is not supported (only cifar10 and cifar100 can be downloaded); "
                         "fetch it yourself and give its folder as root")


def _choice(name: str, option: str, value: Any, valid: Sequence[str]) -> str:
    if value not in valid:
        raise ValueError(f"{name}: option {option} must be one of {', '.join(valid)}, not {value!r}")
    return value


def _labels(name: str, labels: np.ndarray | Sequence[int], num_classes: int) -> Tensor:
    y = torch.from_numpy(np.asarray(labels).astype(np.int64, copy=False).reshape(-1))
    if len(y) and not (int(y.min()) >= 0 and int(y.max()) < num_classes):
        raise ValueError(f"{name}: labels outside 0..{num_classes - 1}")
    return y


def _nchw(images: np.ndarray) -> Tensor:
    """(N, H, W, C) uint8, as CIFAR's arrays are, -> a contiguous (N, C, H, W) tensor."""
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


# ----- CIFAR-10 and CIFAR-100: torchvision's python format ------------------------------------------

class _CIFAR10Files(torchvision.datasets.CIFAR10):
    """torchvision's CIFAR-10 reader, trusting files that exist.

    torchvision checks every file's md5 against the official release, so a re-packed copy (or the small files
    the tests write) reads as "corrupted"; what was actually read is recorded by the data set's fingerprint.
    Only the files of the split asked for are checked, so an eval set can use a folder holding the test batch.
    """

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


class _CIFAR100Files(_CIFAR10Files, torchvision.datasets.CIFAR100):
    pass


def _read_cifar(name: str, cls: type[_CIFAR10Files], root: str | None, train: bool, download: bool,
                layout: str) -> _CIFAR10Files:
    if root is None:
        raise ValueError(f"{name}: root is required (the folder holding {layout})")
    path = Path(root).expanduser()
    if not download:  # our own message for a missing file: torchvision's names no path
        _require(name, cls.split_files(path, train), layout)
    return cls(str(path), train=train, download=download)


CIFAR10_LAYOUT = ("torchvision's CIFAR-10 python format under root: "
                  "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}")
CIFAR100_LAYOUT = "torchvision's CIFAR-100 python format under root: cifar-100-python/{train,test,meta}"


@DATASETS.register("cifar10", doc="CIFAR-10: 50k train (the pool), 10k test; torchvision's python format",
                   image_size=32)
def cifar10(root: str | None = None, download: bool = False, **options: Any) -> DataSet:
    reject_options("cifar10", options)
    train = _read_cifar("cifar10", _CIFAR10Files, root, True, download, CIFAR10_LAYOUT)
    test = _read_cifar("cifar10", _CIFAR10Files, root, False, False, CIFAR10_LAYOUT)
    k = len(train.classes)
    return make_dataset("cifar10", _nchw(train.data), _labels("cifar10", train.targets, k),
                        _nchw(test.data), _labels("cifar10", test.targets, k), num_classes=k)


def _coarse_labels(split: _CIFAR10Files) -> list[int]:
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
    _choice("cifar100", "labels", labels, ("fine", "coarse"))
    train = _read_cifar("cifar100", _CIFAR100Files, root, True, download, CIFAR100_LAYOUT)
    test = _read_cifar("cifar100", _CIFAR100Files, root, False, False, CIFAR100_LAYOUT)
    if labels == "fine":
        k, train_y, test_y = len(train.classes), train.targets, test.targets
    else:
        with open(train.split_files(train.root, True)[-1], "rb") as f:
            k = len(pickle.load(f, encoding="latin1")["coarse_label_names"])
        train_y, test_y = _coarse_labels(train), _coarse_labels(test)
    return make_dataset("cifar100", _nchw(train.data), _labels("cifar100", train_y, k),
                        _nchw(test.data), _labels("cifar100", test_y, k), num_classes=k)


# ----- image folders: listing, decoding, the cache ----------------------------------------------------

CACHE_VERSION = 1  # bump when decoding or a recipe changes: old cache files then no longer match any key
DECODE_CHUNK = 512  # images per thread-pool task: one future per image would cost more than a PNG decode


@dataclass(frozen=True)
class ImageFile:
    rel: str  # path relative to root, '/'-separated: the sort key, so the order never depends on listing
    label: int
    size: int  # bytes and mtime: part of the cache key, so an edited file invalidates the cache
    mtime_ns: int


def _list_class_folder(root: Path, split: str, cls: str, label: int, extensions: tuple[str, ...]
                       ) -> list[ImageFile]:
    files = []
    with os.scandir(root / split / cls) as entries:
        for entry in entries:
            if not entry.name.startswith(".") and entry.name.lower().endswith(extensions) and entry.is_file():
                st = entry.stat()
                files.append(ImageFile(f"{split}/{cls}/{entry.name}", label, st.st_size, st.st_mtime_ns))
    return files


def _decode(path: Path, mode: str, side: int | None) -> np.ndarray:
    with Image.open(path) as img:
        img = img.convert(mode)  # CINIC-10 holds grayscale PNGs among the RGB ones
        if side is not None and img.size != (side, side):
            img = img.resize((side, side), Image.Resampling.BILINEAR)  # PIL's resize is antialiased
        a = np.asarray(img)
    return a[:, :, None] if a.ndim == 2 else a


def decode_images(name: str, root: Path, files: Sequence[ImageFile], mode: str = "RGB", side: int | None = None,
                  hint: str = "") -> np.ndarray:
    """Decode every file into one (N, C, H, W) uint8 array, on a small thread pool (PIL releases the GIL).

    Every image must come out the size of the first; else a ValueError names the first odd file.
    """
    if not files:
        raise ValueError(f"{name}: no images found under {root}")
    first = _decode(root / files[0].rel, mode, side)
    h, w, c = first.shape
    out = np.empty((len(files), c, h, w), dtype=np.uint8)

    def decode_range(start: int) -> int | None:
        for i in range(start, min(start + DECODE_CHUNK, len(files))):
            try:
                a = _decode(root / files[i].rel, mode, side)
            except OSError as exc:
                raise ValueError(f"{name}: cannot decode {root / files[i].rel}: {exc}") from None
            if a.shape != first.shape:
                return i
            out[i] = a.transpose(2, 0, 1)
        return None

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        odd = [i for i in pool.map(decode_range, range(0, len(files), DECODE_CHUNK)) if i is not None]
    if odd:
        i = min(odd)
        got = _decode(root / files[i].rel, mode, side).shape
        raise ValueError(f"{name}: {root / files[i].rel} is {got[1]}x{got[0]}x{got[2]}, the others "
                         f"{w}x{h}x{c} (width x height x channels){hint}")
    return out


def cache_folder(option: str | None) -> Path:
    """The cache_dir option, else $AUGWORTH_CACHE, else ~/.cache/augworth."""
    return Path(option or os.environ.get("AUGWORTH_CACHE") or "~/.cache/augworth").expanduser()


def cache_key(fmt: str, settings: dict[str, Any], files: Sequence[ImageFile]) -> str:
    h = hashlib.sha256(json.dumps([CACHE_VERSION, fmt, settings], sort_keys=True).encode())
    for f in files:
        h.update(f"{f.rel}\0{f.label}\0{f.size}\0{f.mtime_ns}\n".encode())
    return h.hexdigest()[:24]


CACHED_ARRAYS = ("train_x", "train_y", "test_x", "test_y", "classes")


def _read_cache(path: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None when there are none or they are unreadable (then they are rebuilt)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in CACHED_ARRAYS}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        warnings.warn(f"unreadable data set cache {path} ({exc}): rebuilding it", stacklevel=3)
        return None
    ok = (arrays["train_x"].ndim == 4 and arrays["test_x"].ndim == 4 and arrays["train_x"].dtype == np.uint8
          and len(arrays["train_x"]) == len(arrays["train_y"]) and len(arrays["test_x"]) == len(arrays["test_y"]))
    if not ok:
        warnings.warn(f"inconsistent data set cache {path}: rebuilding it", stacklevel=3)
        return None
    return arrays


def cached(name: str, key: str, directory: Path, build: Callable[[], dict[str, np.ndarray]]
           ) -> dict[str, np.ndarray]:
    """Read the arrays for `key` from the cache, else build and write them (atomically: temp file, rename).

    Workers that miss at once each build and write the same content; the last rename wins, and a reader
    never sees a partial file. A cache folder that cannot be written only costs the next load a rebuild.
    """
    path = directory / f"{name}-{key}.npz"
    arrays = _read_cache(path)
    if arrays is not None:
        return arrays
    arrays = build()
    tmp = directory / f".{name}-{key}.{os.getpid()}.{id(arrays):x}.tmp.npz"  # ends .npz, or savez appends it
    try:
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    except OSError as exc:
        warnings.warn(f"cannot write the data set cache {path} ({exc}); set cache_dir or $AUGWORTH_CACHE",
                      stacklevel=2)
        tmp.unlink(missing_ok=True)
    return arrays


def _from_arrays(name: str, arrays: dict[str, np.ndarray]) -> DataSet:
    k = len(arrays["classes"])
    return make_dataset(name, torch.from_numpy(arrays["train_x"]), _labels(name, arrays["train_y"], k),
                        torch.from_numpy(arrays["test_x"]), _labels(name, arrays["test_y"], k), num_classes=k)


# ----- CINIC-10 -------------------------------------------------------------------------------------

CINIC_LAYOUT = "CINIC-10 as distributed: <root>/{train,valid,test}/<class>/*.png, CIFAR-10's ten classes"
CINIC_CIFAR_PREFIX = "cifar10-"  # cifar10-<split>-<n>.png: the 60k images CINIC-10 took from CIFAR-10
PAPER_SHUFFLE_SEED = 0


def _list_cinic(root: Path, splits: Sequence[str]) -> list[ImageFile]:
    files = []
    for split in splits:
        for label, cls in enumerate(CIFAR10_CLASSES):
            _require("cinic10", [root / split / cls], CINIC_LAYOUT)
            files += _list_class_folder(root, split, cls, label, (".png",))
    return sorted(files, key=lambda f: f.rel)


def _paper_recipe(root: Path, files: list[ImageFile], holdout: int) -> dict[str, np.ndarray]:
    """Geiping et al.'s CINIC-10: all three splits without the CIFAR-10 part, each distinct image once,
    shuffled with a fixed seed; the last `holdout` are the in-distribution test set."""
    kept = [f for f in files if not f.rel.rsplit("/", 1)[-1].startswith(CINIC_CIFAR_PREFIX)]
    x = _cinic_images(root, kept)
    seen: set[bytes] = set()
    unique = []
    for i in range(len(kept)):  # the first copy in path order stays
        digest = hashlib.blake2b(x[i].tobytes(), digest_size=16).digest()
        if digest not in seen:
            seen.add(digest)
            unique.append(i)
    if holdout >= len(unique):
        raise ValueError(f"cinic10: holdout {holdout} leaves no pool ({len(unique)} distinct non-CIFAR images)")
    order = np.asarray(unique)[np.random.default_rng(PAPER_SHUFFLE_SEED).permutation(len(unique))]
    y = np.asarray([f.label for f in kept], dtype=np.int64)
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
    _no_download("cinic10", download)
    _choice("cinic10", "recipe", recipe, ("standard", "paper"))
    if holdout is not None and recipe != "paper":
        raise ValueError("cinic10: option holdout applies to recipe: paper only (standard tests on the test split)")
    holdout = int_option("cinic10", "holdout", 10_000 if holdout is None else holdout, 1)
    path = _root("cinic10", root, CINIC_LAYOUT)
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
    return _from_arrays("cinic10", cached("cinic10", key, cache_folder(cache_dir), build))


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
    _no_download("imagefolder", download)
    if image_size is not None:
        int_option("imagefolder", "image_size", image_size, 1)
    if not isinstance(grayscale, bool):
        raise ValueError(f"imagefolder: option grayscale must be true or false, not {grayscale!r}")
    path = _root("imagefolder", root, IMAGEFOLDER_LAYOUT)
    _require("imagefolder", [path / "train"], IMAGEFOLDER_LAYOUT)
    test_split = next((s for s in ("test", "val") if (path / s).is_dir()), None)
    if test_split is None:
        raise _missing("imagefolder", path / "test", IMAGEFOLDER_LAYOUT)
    classes = _class_folders(path / "train")
    if not classes:
        raise ValueError(f"imagefolder: no class folders in {path / 'train'} (expected {IMAGEFOLDER_LAYOUT})")
    test_classes = _class_folders(path / test_split)
    if test_classes != classes:
        only_train, only_test = sorted(set(classes) - set(test_classes)), sorted(set(test_classes) - set(classes))
        raise ValueError(f"imagefolder: {path / test_split} must hold the same class folders as {path / 'train'} "
                         f"(only in train: {only_train or 'none'}; only in {test_split}: {only_test or 'none'})")
    extensions = tuple(IMG_EXTENSIONS)
    train, test = [], []
    for label, cls in enumerate(classes):
        found = sorted(_list_class_folder(path, "train", cls, label, extensions), key=lambda f: f.rel)
        if not found:
            raise ValueError(f"imagefolder: no images in {path / 'train' / cls} (extensions: {', '.join(extensions)})")
        train += found
        test += sorted(_list_class_folder(path, test_split, cls, label, extensions), key=lambda f: f.rel)
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
    return _from_arrays("imagefolder", cached("imagefolder", key, cache_folder(cache_dir), build))


# ----- eval sets for models trained on CIFAR-10-like data ---------------------------------------------

def _check_cifar10_like(name: str, data: DataSet) -> None:
    h, w = data.train_x.shape[-2:]
    if data.num_classes != 10 or data.channels != 3 or (h, w) != (32, 32):
        raise ValueError(f"eval set {name} needs a data set of CIFAR-10's shape (10 classes, 3 channels, 32x32); "
                         f"{data.name} has {data.num_classes} classes, {data.channels} channels, {w}x{h}")


def _load_npy(name: str, path: Path, layout: str, mmap: bool = False) -> np.ndarray:
    _require(name, [path], layout)
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
    test = _read_cifar("cifar10_test", _CIFAR10Files, root, False, False, CIFAR10_LAYOUT)
    return _nchw(test.data), _labels("cifar10_test", test.targets, 10)


CIFAR10C_CORRUPTIONS = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
                        "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform",
                        "pixelate", "jpeg_compression")  # the 15 of Hendrycks & Dietterich's benchmark
CIFAR10C_EXTRA = ("speckle_noise", "gaussian_blur", "spatter", "saturate")  # released too, held out in the paper
CIFAR10C_LAYOUT = "the released CIFAR-10-C: <root>/<corruption>.npy (5 severities x N, 32, 32, 3) and labels.npy"


@EVAL_SETS.register("cifar10c", doc="CIFAR-10-C at one severity (1..5, default 3); option corruptions: a list")
def cifar10c(data: DataSet, root: str | None = None, *, severity: int = 3,
             corruptions: Sequence[str] | str | None = None, **options: Any) -> tuple[Tensor, Tensor]:
    """Every listed corruption of CIFAR-10's test set at one severity, one after another.

    Default corruptions: the 15 benchmark ones (all required) plus those of the 4 extra ones present in root;
    a full download holds all 19. Rows (s-1)N..sN of each file are severity s (the files stack 1..5).
    """
    reject_options("cifar10c", options, ("severity", "corruptions"))
    _check_cifar10_like("cifar10c", data)
    int_option("cifar10c", "severity", severity, 1, 5)
    path = _root("cifar10c", root, CIFAR10C_LAYOUT)
    if corruptions is None:
        names = list(CIFAR10C_CORRUPTIONS) + [c for c in CIFAR10C_EXTRA if (path / f"{c}.npy").is_file()]
    else:
        names = [corruptions] if isinstance(corruptions, str) else list(corruptions)
        if not names or not all(isinstance(c, str) for c in names) or len(set(names)) != len(names):
            raise ValueError(f"cifar10c: option corruptions must be a non-empty list of distinct names, "
                             f"e.g. {', '.join(CIFAR10C_CORRUPTIONS[:3])}; got {corruptions!r}")
    _require("cifar10c", [path / f"{c}.npy" for c in names], CIFAR10C_LAYOUT)
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
    y = _labels("cifar10c", labels[rows], 10)
    return torch.from_numpy(x), y.repeat(len(names))


CIFAR10_1_LAYOUT = "CIFAR-10.1 as released: <root>/cifar10.1_<version>_data.npy and cifar10.1_<version>_labels.npy"


@EVAL_SETS.register("cifar10_1", doc="CIFAR-10.1 (Recht et al. 2018), 2,000 new test images; option version: v6|v4")
def cifar10_1(data: DataSet, root: str | None = None, *, version: str = "v6", **options: Any
              ) -> tuple[Tensor, Tensor]:
    reject_options("cifar10_1", options, ("version",))
    _choice("cifar10_1", "version", version, ("v6", "v4"))
    _check_cifar10_like("cifar10_1", data)
    path = _root("cifar10_1", root, CIFAR10_1_LAYOUT)
    images_path = path / f"cifar10.1_{version}_data.npy"
    images = _load_npy("cifar10_1", images_path, CIFAR10_1_LAYOUT)
    labels = _load_npy("cifar10_1", path / f"cifar10.1_{version}_labels.npy", CIFAR10_1_LAYOUT)
    _check_images("cifar10_1", images_path, images, len(labels))
    return _nchw(images), _labels("cifar10_1", labels, 10)
