"""Data sets, their eval sets, and the training subsets of a cell.

A data set is held as float32 tensors in [0, 1], (N, C, H, W), so a worker loads it once and every cell
slices it on the device. Registries: `DATASETS` (name -> loader) and `EVAL_SETS` (name -> builder).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from .registry import Registry

Tensor = torch.Tensor


@dataclass(frozen=True, eq=False)
class DataSet:
    name: str
    train_x: Tensor  # (N, C, H, W) float32 in [0, 1]: the training pool subsets are drawn from
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


DATASETS: Registry[Callable[..., DataSet]] = Registry("data set")
EVAL_SETS: Registry[Callable[[DataSet], tuple[Tensor, Tensor]]] = Registry("eval set")


def fingerprint(*tensors: Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(str(tuple(t.shape)).encode())
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def make_dataset(name: str, train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor,
                 num_classes: int) -> DataSet:
    return DataSet(
        name=name, train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y, num_classes=num_classes,
        fingerprint=fingerprint(train_x, train_y, test_x, test_y),
        mean=tuple(float(m) for m in train_x.mean(dim=(0, 2, 3))),
    )


@functools.lru_cache(maxsize=4)
def load_dataset(name: str, root: str | None = None) -> DataSet:
    """Load once per process (Ray reuses worker processes, so once per worker)."""
    return DATASETS.create(name, root=root)


# ----- data sets ------------------------------------------------------------------------------------

def _bundled_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits, read from the CSV in its wheel: importing sklearn itself costs ~1 s a process."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise OSError("scikit-learn is not installed: the digits data set ships inside its wheel")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz"
    table = np.loadtxt(path, delimiter=",", dtype=np.float32)  # 1,797 rows: 64 pixels (0..16), then the label
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)


@DATASETS.register("digits", doc="scikit-learn's 1,797 real 8x8 digits, upscaled to 16x16; 500 held out")
def digits(root: str | None = None) -> DataSet:
    if root is not None:
        raise ValueError("the digits data set is bundled with scikit-learn and takes no root")
    images, labels = _bundled_digits()
    x = torch.from_numpy(images).unsqueeze(1) / 16.0  # (1797, 1, 8, 8)
    x = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False).clamp_(0, 1)
    y = torch.from_numpy(labels)
    # a fixed, stratified test split: the first 500 of a stratified order (see subset_order)
    order = subset_order(y, seed=0, salt="digits:test-split")
    test_idx, train_idx = order[:500].sort().values, order[500:].sort().values
    return make_dataset("digits", x[train_idx], y[train_idx], x[test_idx], y[test_idx], num_classes=10)


# ----- eval sets ------------------------------------------------------------------------------------

@EVAL_SETS.register("test", doc="the data set's held-out test split")
def test_split(data: DataSet) -> tuple[Tensor, Tensor]:
    return data.test_x, data.test_y


@EVAL_SETS.register("corrupted", doc="the test split under a fixed suite: noise, blur, contrast, shift, rotation")
def corrupted(data: DataSet) -> tuple[Tensor, Tensor]:
    """In the spirit of CIFAR-10-C: every test image under each of five fixed, deterministic corruptions."""
    x, y = data.test_x, data.test_y
    side = data.image_size
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    kernel = 3 if side <= 16 else 5
    suite = [
        (x + 0.15 * noise).clamp(0, 1),  # Gaussian noise
        TF.gaussian_blur(x, kernel_size=[kernel, kernel], sigma=[1.0, 1.0]),  # blur
        TF.adjust_contrast(x, 0.4) if x.shape[1] in (1, 3) else x,  # low contrast
        TF.affine(x, angle=0.0, translate=[side // 8, side // 8], scale=1.0, shear=[0.0, 0.0]),  # shift
        TF.affine(x, angle=20.0, translate=[0, 0], scale=1.0, shear=[0.0, 0.0],
                  interpolation=TF.InterpolationMode.BILINEAR),  # rotation
    ]
    return torch.cat(suite), y.repeat(len(suite))


@functools.lru_cache(maxsize=16)
def _eval_set_cached(data_id: int, name: str, data: DataSet) -> tuple[Tensor, Tensor]:
    return EVAL_SETS.create(name, data=data)


def eval_set(data: DataSet, name: str) -> tuple[Tensor, Tensor]:
    """Built once per process and data set, like the data set itself."""
    return _eval_set_cached(id(data), name, data)


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


def subset_indices(data: DataSet, size: int, seed: int) -> Tensor:
    if not 0 < size <= data.pool_size:
        raise ValueError(f"data size {size} outside 1..{data.pool_size}")
    return subset_order(data.train_y, seed, salt=f"{data.name}:{data.fingerprint}")[:size]
