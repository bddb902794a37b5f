"""Data sets as tensors, the registries, eval-set requests, and the training subsets of a cell.

A data set is held as tensors (N, C, H, W), uint8 in 0..255 or float32 in [0, 1], so a worker loads it once
and every cell slices it on the device; `to_float` turns a slice into the model's float32. Real image data
sets stay uint8: 200k CIFAR-sized images cost 0.6 GB that way and 2.4 GB as float32, in every worker.

Registries: `DATASETS` (name -> `fn(root=None, download=False, **options) -> DataSet`) and `EVAL_SETS`
(name -> `fn(data, root=None, **options) -> (x, y)`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from augworth.search_spaces.options import OptionsKey, canonical_options, plain_options

from ..registry import Registry

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

    @functools.cached_property
    def std(self) -> tuple[float, ...]:
        """Per-channel standard deviation of the pool (for `normalize`), computed on first use."""
        return channel_std(self.train_x, self.mean)

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
# corruptions: the corruptions an eval set holds without options (none: the test split, or a natural shift);
# an option `corruptions` picks some. `analyze --question ood` compares them with the policies' `covers`.
EVAL_SETS: Registry[Callable[..., tuple[Tensor, Tensor]]] = Registry("eval set", meta=("corruptions",))

Options = OptionsKey  # a component's options as canonical JSON text (search_spaces.options): hashable, cacheable
STATS_CHUNK = 8192  # images per step when reducing or converting a uint8 set: never a float copy of all of it


def to_float(x: Tensor) -> Tensor:
    """uint8 0..255 -> float32 in [0, 1]; a float tensor is returned as is (no copy)."""
    if x.is_floating_point():
        return x
    return x.to(torch.float32).div_(255.0)


def to_uint8(x: Tensor) -> Tensor:
    """float in [0, 1] -> uint8 0..255, rounded."""
    return x.mul(255.0).round_().clamp_(0, 255).to(torch.uint8)


def option_items(options: Mapping[str, Any] | Iterable[tuple[str, Any]] | Options | None) -> Options:
    """Options in their canonical form (`search_spaces.options`): the text the caches key on, and what the
    frozen spec and the comparison of two specs use too, so a list and a tuple are never two test sets."""
    return canonical_options(options)


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
        h.update(t.contiguous().numpy().data)  # the raw bytes, read in place (a tobytes() copy would double memory)
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


def channel_std(x: Tensor, mean: tuple[float, ...]) -> tuple[float, ...]:
    """Per-channel standard deviation in [0, 1] units (population), a chunk at a time in float64."""
    squares = torch.zeros(x.shape[1], dtype=torch.float64)
    centre = torch.tensor(mean, dtype=torch.float64).view(1, -1, 1, 1)
    for chunk in x.split(STATS_CHUNK):
        values = chunk.double() / (1.0 if x.is_floating_point() else 255.0)
        squares += ((values - centre) ** 2).sum(dim=(0, 2, 3))
    count = x.shape[0] * x.shape[2] * x.shape[3]
    return tuple(max(float(s / count) ** 0.5, 1e-6) for s in squares.tolist())


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
                   options: Mapping[str, Any] | Options | None = None, download: bool = False) -> DataSet:
    """Build a data set afresh, without the cache."""
    # download only when asked (None is dropped): a plugin's loader written as fn(root=None) keeps working
    return DATASETS.create(name, root=root, download=True if download else None, **plain_options(options))


@functools.lru_cache(maxsize=4)
def _load_dataset_cached(name: str, root: str | None, options: Options, download: bool) -> DataSet:
    return create_dataset(name, root, options, download)


def load_dataset(name: str, root: str | None = None, options: Mapping[str, Any] | Options | None = None,
                 download: bool = False) -> DataSet:
    """Load once per process (Ray reuses worker processes, so once per worker); options as a dict or pairs."""
    return _load_dataset_cached(name, root, option_items(options), bool(download))


load_dataset.__wrapped__ = create_dataset  # type: ignore[attr-defined]  # functools' name for the uncached call
load_dataset.cache_clear = _load_dataset_cached.cache_clear  # type: ignore[attr-defined]


def eval_request(entry: str | Mapping[str, Any]) -> tuple[str, str, str | None, Options]:
    """(label, name, root, options) of an eval set given by name or as the spec's mapping."""
    if isinstance(entry, str):
        return entry, entry, None, option_items(None)
    return entry.get("label") or entry["name"], entry["name"], entry.get("root"), option_items(entry.get("options"))



@functools.lru_cache(maxsize=16)
def _eval_set_cached(data: DataSet, name: str, root: str | None, options: Options) -> tuple[Tensor, Tensor]:
    return EVAL_SETS.create(name, data=data, root=root, **plain_options(options))


def eval_set(data: DataSet, name: str, root: str | None = None,
             options: Mapping[str, Any] | Options | None = None) -> tuple[Tensor, Tensor]:
    """Built once per process and (data set, name, root, options), like the data set itself."""
    return _eval_set_cached(data, name, root, option_items(options))


@functools.lru_cache(maxsize=16)
def _eval_set_identity(data: DataSet, name: str, root: str | None, options: Options) -> str:
    x, y = _eval_set_cached(data, name, root, options)
    given = plain_options(options)  # [[option, value], ...] sorted: the form fingerprints of stored rows were made in
    what = json.dumps([name, [[k, given[k]] for k in sorted(given)]], sort_keys=True, default=str)
    return hashlib.sha256(what.encode() + fingerprint(x, y).encode()).hexdigest()[:16]


def eval_set_fingerprint(data: DataSet, name: str, root: str | None = None,
                         options: Mapping[str, Any] | Options | None = None) -> str:
    """What an eval set is, as a row records it: its name, options and content (images and labels, hashed
    as a data set's fingerprint is, once per process). The root is left out: the same files elsewhere are the
    same set; other files under the same label are not."""
    return _eval_set_identity(data, name, root, option_items(options))


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
