"""Data sets, their eval sets, and the training subsets of a cell.

A data set is held as tensors (N, C, H, W), uint8 in 0..255 or float32 in [0, 1], so a worker loads it once
and every cell slices it on the device; `to_float` turns a slice into the model's float32. Real image data
sets stay uint8: 200k CIFAR-sized images cost 0.6 GB that way and 2.4 GB as float32, in every worker.

Registries: `DATASETS` (name -> `fn(root=None, download=False, **options) -> DataSet`) and `EVAL_SETS`
(name -> `fn(data, root=None, **options) -> (x, y)`). The file-based formats (CIFAR, CINIC-10, image folders,
CIFAR-10-C, CIFAR-10.1) live in `file_datasets`, imported at the bottom so they register with this module.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from .registry import Registry

Tensor = torch.Tensor


@dataclass(frozen=True, eq=False)
class DataSet:
    name: str
    train_x: Tensor  # (N, C, H, W) uint8 in 0..255 or float32 in [0, 1]: the pool subsets are drawn from
    train_y: Tensor  # (N,) int64
    test_x: Tensor  # the fixed in-distribution test split
    test_y: Tensor
    num_classes: int
    fingerprint: str  # content hash of pool and test split: part of every cell key
    mean: tuple[float, ...] = field(default=())  # per-channel mean of the pool (cutout's fill)

    @property
    def pool_size(self) -> int:
        return len(self.train_y)

    @property
    def image_size(self) -> int:
        return int(self.train_x.shape[-1])

    @property
    def channels(self) -> int:
        return int(self.train_x.shape[1])


# image_size: the side of its images where no option sets it (the GPU-hour estimate scales with it)
DATASETS: Registry[Callable[..., DataSet]] = Registry("data set", meta=("image_size",))
EVAL_SETS: Registry[Callable[..., tuple[Tensor, Tensor]]] = Registry("eval set")

Options = tuple[tuple[str, Any], ...]  # a component's options as sorted (name, value) pairs: hashable, cacheable
STATS_CHUNK = 8192  # images per step when reducing or converting a uint8 set: never a float copy of all of it


def to_float(x: Tensor) -> Tensor:
    """uint8 0..255 -> float32 in [0, 1]; a float tensor is returned as is (no copy)."""
    if x.is_floating_point():
        return x
    return x.to(torch.float32).div_(255.0)


def to_uint8(x: Tensor) -> Tensor:
    """float in [0, 1] -> uint8 0..255, rounded."""
    return x.mul(255.0).round_().clamp_(0, 255).to(torch.uint8)


def option_items(options: Mapping[str, Any] | Iterable[tuple[str, Any]] | None) -> Options:
    """A mapping or pairs of options as sorted pairs, lists made tuples: the form the caches key on."""
    pairs = options.items() if isinstance(options, Mapping) else (options or ())
    return tuple(sorted((str(k), tuple(v) if isinstance(v, list) else v) for k, v in pairs))


def reject_options(what: str, options: Mapping[str, Any], valid: Iterable[str] = ()) -> None:
    """A ValueError for the first option `what` does not know, naming the ones it does."""
    if options:
        valid = sorted(valid)
        known = f"valid: {', '.join(valid)}" if valid else "it takes none"
        raise ValueError(f"{what}: unknown option {next(iter(options))!r} ({known})")


def int_option(what: str, option: str, value: Any, low: int = 1, high: int | None = None) -> int:
    """The value, if an integer in low..high (a bool is not one); else a ValueError naming the option."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bounds = f"in {low}..{high}" if high is not None else f">= {low}"
        raise ValueError(f"{what}: option {option} must be an integer {bounds}, not {value!r}")
    return value


def fingerprint(*tensors: Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(str(tuple(t.shape)).encode())
        h.update(t.contiguous().numpy())  # the raw bytes, read in place (a tobytes() copy would double memory)
    return h.hexdigest()[:16]


def channel_mean(x: Tensor) -> tuple[float, ...]:
    """Per-channel mean in [0, 1]; a uint8 set is summed exactly in int64, a chunk at a time."""
    if x.is_floating_point():
        return tuple(float(m) for m in x.mean(dim=(0, 2, 3)))
    total = torch.zeros(x.shape[1], dtype=torch.int64)
    for chunk in x.split(STATS_CHUNK):
        total += chunk.sum(dim=(0, 2, 3), dtype=torch.int64)
    count = x.shape[0] * x.shape[2] * x.shape[3] * 255
    return tuple(float(t) / count for t in total.tolist())


def make_dataset(name: str, train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor,
                 num_classes: int) -> DataSet:
    for x in (train_x, test_x):
        if x.dtype not in (torch.uint8, torch.float32) or x.dim() != 4:
            raise ValueError(f"{name}: images must be (N, C, H, W) uint8 or float32, not {x.dtype} {tuple(x.shape)}")
    return DataSet(
        name=name, train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y, num_classes=num_classes,
        fingerprint=fingerprint(train_x, train_y, test_x, test_y),
        mean=channel_mean(train_x),
    )


def create_dataset(name: str, root: str | None = None,
                   options: Mapping[str, Any] | Options = (), download: bool = False) -> DataSet:
    """Build a data set afresh, without the cache."""
    # download only when asked (None is dropped): a plugin's loader written as fn(root=None) keeps working
    return DATASETS.create(name, root=root, download=True if download else None, **dict(option_items(options)))


@functools.lru_cache(maxsize=4)
def _load_dataset_cached(name: str, root: str | None, options: Options, download: bool) -> DataSet:
    return create_dataset(name, root, options, download)


def load_dataset(name: str, root: str | None = None, options: Mapping[str, Any] | Options = (),
                 download: bool = False) -> DataSet:
    """Load once per process (Ray reuses worker processes, so once per worker); options as a dict or pairs."""
    return _load_dataset_cached(name, root, option_items(options), bool(download))


load_dataset.__wrapped__ = create_dataset  # type: ignore[attr-defined]  # functools' name for the uncached call
load_dataset.cache_clear = _load_dataset_cached.cache_clear  # type: ignore[attr-defined]


# ----- data sets ------------------------------------------------------------------------------------

def _bundled_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits, read from the CSV in its wheel: importing sklearn itself costs ~1 s a process."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise OSError("scikit-learn is not installed: the digits data set ships inside its wheel")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz"
    table = np.loadtxt(path, delimiter=",", dtype=np.float32)  # 1,797 rows: 64 pixels (0..16), then the label
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)


@DATASETS.register("digits", doc="scikit-learn's 1,797 real 8x8 digits, upscaled to 16x16; 500 held out",
                   image_size=16)
def digits(root: str | None = None, download: bool = False, **options: Any) -> DataSet:
    if root is not None:
        raise ValueError("the digits data set is bundled with scikit-learn and takes no root")
    if download:
        raise ValueError("the digits data set is bundled with scikit-learn: there is nothing to download")
    reject_options("digits", options)
    images, labels = _bundled_digits()
    x = torch.from_numpy(images).unsqueeze(1) / 16.0  # (1797, 1, 8, 8)
    x = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False).clamp_(0, 1)
    y = torch.from_numpy(labels)
    # a fixed, stratified test split: the first 500 of a stratified order (see subset_order)
    order = subset_order(y, seed=0, salt="digits:test-split")
    test_idx, train_idx = order[:500].sort().values, order[500:].sort().values
    return make_dataset("digits", x[train_idx], y[train_idx], x[test_idx], y[test_idx], num_classes=10)


SYNTHETIC_SEED = 20230501


@DATASETS.register("synthetic", doc="generated: a smooth colour template per class, shifted, flipped, noisy",
                   image_size=32)
def synthetic(root: str | None = None, download: bool = False, *, image_size: int = 32, channels: int = 3,
              pool: int = 2000, test: int = 500, classes: int = 10, **options: Any) -> DataSet:
    """A learnable stand-in for a real image set, for smoke runs and tests: no files, built in milliseconds.

    Each class is a random 4x4 colour grid upsampled to a smooth template. An image is its class's template
    blended with another class's (weight 0.5..1), shifted by up to 1/8 of the side, flipped left-right half
    the time, plus pixel noise: more data helps (the noise and the blend average out), and so do flips and
    crops, since the classes are invariant to both by construction.
    """
    if root is not None or download:
        raise ValueError("the synthetic data set is generated: it takes no root and has nothing to download")
    reject_options("synthetic", options, ("image_size", "channels", "pool", "test", "classes"))
    side = int_option("synthetic", "image_size", image_size, 4)
    c = int_option("synthetic", "channels", channels)
    k = int_option("synthetic", "classes", classes, 2)
    n_pool, n_test = int_option("synthetic", "pool", pool), int_option("synthetic", "test", test)
    g = torch.Generator().manual_seed(SYNTHETIC_SEED)
    grid = torch.rand(k, c, 4, 4, generator=g)
    templates = F.interpolate(grid, size=(side, side), mode="bicubic", align_corners=False).clamp_(0, 1)
    n = n_pool + n_test
    y = torch.arange(n) % k  # balanced, then shuffled
    y = y[torch.randperm(n, generator=g)]
    other = (y + torch.randint(1, k, (n,), generator=g)) % k
    weight = (0.5 + 0.5 * torch.rand(n, 1, 1, 1, generator=g))
    x = weight * templates[y] + (1 - weight) * templates[other]  # (N, C, H, W)
    shift = (torch.rand(n, 2, generator=g) * 2 - 1) * 0.25  # up to 1/8 of the side (the grid spans 2)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, :, 2] = shift
    flips = torch.rand(n, generator=g) < 0.5
    theta[flips, 0, 0] = -1.0
    sample_grid = F.affine_grid(theta, [n, c, side, side], align_corners=False)
    x = F.grid_sample(x, sample_grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    x = (x + 0.15 * torch.randn(x.shape, generator=g)).clamp_(0, 1).contiguous()
    return make_dataset("synthetic", x[:n_pool], y[:n_pool], x[n_pool:], y[n_pool:], num_classes=k)


# ----- eval sets ------------------------------------------------------------------------------------

def _no_root_or_options(name: str, root: str | None, options: Mapping[str, Any]) -> None:
    if root is not None:
        raise ValueError(f"eval set {name!r} is built from the data set itself and takes no root")
    reject_options(f"eval set {name!r}", options)


@EVAL_SETS.register("test", doc="the data set's held-out test split")
def test_split(data: DataSet, root: str | None = None, **options: Any) -> tuple[Tensor, Tensor]:
    _no_root_or_options("test", root, options)
    return data.test_x, data.test_y


CORRUPTED_CHUNK = 1024  # test images corrupted at a time: the float copies of a uint8 set stay small


def _corruption_suite(x: Tensor, noise: Tensor) -> list[Tensor]:
    side = x.shape[-1]
    kernel = 3 if side <= 16 else 5
    return [
        (x + 0.15 * noise).clamp(0, 1),  # Gaussian noise
        TF.gaussian_blur(x, kernel_size=[kernel, kernel], sigma=[1.0, 1.0]),  # blur
        TF.adjust_contrast(x, 0.4) if x.shape[1] in (1, 3) else x,  # low contrast
        TF.affine(x, angle=0.0, translate=[side // 8, side // 8], scale=1.0, shear=[0.0, 0.0]),  # shift
        TF.affine(x, angle=20.0, translate=[0, 0], scale=1.0, shear=[0.0, 0.0],
                  interpolation=TF.InterpolationMode.BILINEAR),  # rotation
    ]


@EVAL_SETS.register("corrupted", doc="the test split under a fixed suite: noise, blur, contrast, shift, rotation")
def corrupted(data: DataSet, root: str | None = None, **options: Any) -> tuple[Tensor, Tensor]:
    """In the spirit of CIFAR-10-C: every test image under each of five fixed, deterministic corruptions.

    Same dtype as the test split: a uint8 set is corrupted in float a chunk at a time and stored back as uint8.
    Chunk i draws its noise from seed i, so a test split of one chunk gets the noise it always had.
    """
    _no_root_or_options("corrupted", root, options)
    x, y = data.test_x, data.test_y
    n, suite_size = len(x), 5
    out = torch.empty((suite_size * n, *x.shape[1:]), dtype=x.dtype)
    for i, start in enumerate(range(0, n, CORRUPTED_CHUNK)):
        chunk = to_float(x[start : start + CORRUPTED_CHUNK])
        noise = torch.randn(chunk.shape, generator=torch.Generator().manual_seed(i))
        for k, image in enumerate(_corruption_suite(chunk, noise)):
            rows = slice(k * n + start, k * n + start + len(chunk))
            out[rows] = image if x.is_floating_point() else to_uint8(image)
    return out, y.repeat(suite_size)


@functools.lru_cache(maxsize=16)
def _eval_set_cached(data: DataSet, name: str, root: str | None, options: Options) -> tuple[Tensor, Tensor]:
    return EVAL_SETS.create(name, data=data, root=root, **dict(options))


def eval_set(data: DataSet, name: str, root: str | None = None,
             options: Mapping[str, Any] | Options = ()) -> tuple[Tensor, Tensor]:
    """Built once per process and (data set, name, root, options), like the data set itself."""
    return _eval_set_cached(data, name, root, option_items(options))


# ----- subsets --------------------------------------------------------------------------------------

def subset_order(labels: Tensor, seed: int, salt: str) -> Tensor:
    """A class-stratified order of the pool for one seed: every prefix is a stratified subset.

    Each class is shuffled, and its i-th image gets the key (i + u_c) / n_c (u_c a random phase per class),
    so merging the classes by key keeps every prefix within about one image of proportional; the first image
    of each class comes first, so any prefix of at least `num_classes` holds every class. Prefixes nest:
    the subset of size n is contained in the one of size m > n. Depends only on (labels, seed, salt), never
    on the treatment.
    """
    y = labels.numpy()
    rng = np.random.default_rng([seed, zlib.crc32(salt.encode())])
    keys = np.empty(len(y), dtype=np.float64)
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        n = len(members)
        keys[members] = (np.arange(n) + rng.random()) / n
        keys[members[0]] -= 2.0  # one of each class before anything else
    tiebreak = rng.random(len(y))
    return torch.from_numpy(np.lexsort((tiebreak, keys)))


SUBSET_DRAWS = ("nested", "independent")


def subset_indices(data: DataSet, size: int, seed: int, draw: str = "nested") -> Tensor:
    """The training subset of a cell: a stratified draw of `size` images from the pool.

    nested: prefixes of one order per seed, so a seed's smaller subsets lie inside its larger ones (curves
    over size are smoother). independent: a fresh order per (size, seed), as the paper drew each size.
    """
    if not 0 < size <= data.pool_size:
        raise ValueError(f"data size {size} outside 1..{data.pool_size}")
    salt = f"{data.name}:{data.fingerprint}"
    if draw == "independent":
        salt += f":size={size}"
    elif draw != "nested":
        raise ValueError(f"unknown subset draw {draw!r} (valid: {', '.join(SUBSET_DRAWS)})")
    return subset_order(data.train_y, seed, salt=salt)[:size]


# The file formats register themselves in the registries above; imported last, as they import this module.
from . import file_datasets  # noqa: E402, F401
