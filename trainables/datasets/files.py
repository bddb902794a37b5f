"""What the file-based data sets share: root and option checks, decoding image folders in threads, and the
cache of decoded arrays.

Decoding a folder of PNGs takes minutes at CINIC-10's 270k files, and every Ray worker loads the data set,
so the decoded arrays are cached in one .npz per (format, options, file list with sizes and mtimes).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .core import DataSet, Tensor, make_dataset

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def missing_file(name: str, path: Path, layout: str) -> FileNotFoundError:
    return FileNotFoundError(f"{name}: {path} not found (expected {layout})")


def root_folder(name: str, root: str | None, layout: str) -> Path:
    if root is None:
        raise ValueError(f"{name}: root is required (the folder holding {layout})")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise missing_file(name, path, layout)
    return path


def require_files(name: str, paths: Sequence[Path], layout: str) -> None:
    for path in paths:
        if not path.exists():
            raise missing_file(name, path, layout)


def no_download(name: str, download: bool) -> None:
    if download:
        raise ValueError(f"{name}: download is not supported (only cifar10 and cifar100 can be downloaded); "
                         "fetch it yourself and give its folder as root")


def option_choice(name: str, option: str, value: Any, valid: Sequence[str]) -> str:
    if value not in valid:
        raise ValueError(f"{name}: option {option} must be one of {', '.join(valid)}, not {value!r}")
    return value


def label_tensor(name: str, labels: np.ndarray | Sequence[int], num_classes: int) -> Tensor:
    y = torch.from_numpy(np.asarray(labels).astype(np.int64, copy=False).reshape(-1))
    if len(y) and not (int(y.min()) >= 0 and int(y.max()) < num_classes):
        raise ValueError(f"{name}: labels outside 0..{num_classes - 1}")
    return y


def nchw(images: np.ndarray) -> Tensor:
    """(N, H, W, C) uint8, as CIFAR's arrays are, -> a contiguous (N, C, H, W) tensor."""
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


# ----- image folders: listing, decoding, the cache ----------------------------------------------------

CACHE_VERSION = 2  # bump when decoding or a recipe changes: old cache files then no longer match any key
DECODE_CHUNK = 512  # images per thread-pool task: one future per image would cost more than a PNG decode


@dataclass(frozen=True)
class ImageFile:
    rel: str  # path relative to root, '/'-separated: the sort key, so the order never depends on listing
    label: int
    size: int  # bytes and mtime: part of the cache key, so an edited file invalidates the cache
    mtime_ns: int


def list_class_folder(root: Path, split: str, cls: str, label: int, extensions: tuple[str, ...]
                       ) -> list[ImageFile]:
    files = []
    with os.scandir(root / split / cls) as entries:
        for entry in entries:
            if not entry.name.startswith(".") and entry.name.lower().endswith(extensions) and entry.is_file():
                st = entry.stat()
                files.append(ImageFile(f"{split}/{cls}/{entry.name}", label, st.st_size, st.st_mtime_ns))
    return files


def _decode(path: Path, mode: str, side: int | None) -> np.ndarray:
    with Image.open(path) as opened:
        img = opened.convert(mode)  # CINIC-10 holds grayscale PNGs among the RGB ones
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
        np.savez(tmp, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as its allow_pickle
        os.replace(tmp, path)
    except OSError as exc:
        warnings.warn(f"cannot write the data set cache {path} ({exc}); set cache_dir or $AUGWORTH_CACHE",
                      stacklevel=2)
        tmp.unlink(missing_ok=True)
    return arrays


def arrays_to_dataset(name: str, arrays: dict[str, np.ndarray]) -> DataSet:
    k = len(arrays["classes"])
    return make_dataset(name, torch.from_numpy(arrays["train_x"]), label_tensor(name, arrays["train_y"], k),
                        torch.from_numpy(arrays["test_x"]), label_tensor(name, arrays["test_y"], k), num_classes=k)
