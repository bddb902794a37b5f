"""The data sets and eval sets that need no files: scikit-learn's digits (the embedded default), a generated
synthetic set; the held-out test split and a fixed corruption suite of it."""

from __future__ import annotations

import importlib.util
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..lazy_torchvision import tf
from .core import (
    DATASETS,
    EVAL_SETS,
    DataSet,
    Tensor,
    int_option,
    make_dataset,
    reject_options,
    subset_order,
    to_float,
    to_uint8,
)

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


@EVAL_SETS.register("test", doc="the data set's held-out test split; options parts and part: one of `parts` "
                    "disjoint, class-stratified parts of it (a search's selection set apart from its confirmation's)")
def test_split(data: DataSet, root: str | None = None, **options: Any) -> tuple[Tensor, Tensor]:
    """The test split, or (options `parts`: n >= 2, `part`: 0..n-1) one of n disjoint parts of it that together
    are the whole split, each holding every class's images split as evenly as they go (within one image).
    E.g. `{name: test, label: select, options: {parts: 2, part: 0}}` for search.objective and
    `{..., label: confirm, options: {parts: 2, part: 1}}` for search.confirm."""
    parts = options.pop("parts", None)
    part = options.pop("part", None)
    _no_root_or_options("test", root, options)
    if parts is None and part is None:
        return data.test_x, data.test_y
    if parts is None or part is None:
        raise ValueError("eval set 'test': give both options parts and part, or neither")
    parts = int_option("eval set 'test'", "parts", parts, low=2, high=len(data.test_y))
    part = int_option("eval set 'test'", "part", part, low=0, high=parts - 1)
    chosen = stratified_part(data.test_y, parts, part)
    return data.test_x[chosen], data.test_y[chosen]


def stratified_part(labels: Tensor, parts: int, part: int) -> Tensor:
    """Indices of part `part` of `parts`: each class shuffled once (a fixed seed), its i-th image in part
    (i + class) mod parts, so every part gets floor or ceil of each class's share and the remainders rotate."""
    generator = torch.Generator().manual_seed(zlib.crc32(b"test-parts"))
    chosen = []
    for c in labels.unique().tolist():
        members = (labels == c).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        chosen.append(members[(torch.arange(len(members)) + c) % parts == part])
    return torch.cat(chosen).sort().values


CORRUPTED_CHUNK = 1024  # test images corrupted at a time: the float copies of a uint8 set stay small


def _kernel(x: Tensor) -> int:
    return 3 if x.shape[-1] <= 16 else 5


def _dilate(x: Tensor) -> Tensor:
    """Thicker strokes: a 3x3 grey-level dilation (each pixel the brightest of its neighbours)."""
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


def _elastic(x: Tensor) -> Tensor:
    """A smooth random warp (torchvision's elastic transform), its field fixed by a seed of its own."""
    side = x.shape[-1]
    gen = torch.Generator().manual_seed(7)
    field = torch.rand((1, 2, side, side), generator=gen) * 2 - 1
    field = tf().gaussian_blur(field, kernel_size=[_kernel(x) * 2 + 1] * 2, sigma=[side / 8] * 2)
    field = field / field.abs().amax().clamp_min(1e-12) * (2.0 / side)  # at most 1 pixel: strokes bend, stay whole
    return tf().elastic(x, field.permute(0, 2, 3, 1), interpolation=tf().InterpolationMode.BILINEAR)


# name -> corruption of a float batch (noise: a standard normal batch of its shape). The first five are the
# suite that `corrupted` has always held, in its order; `dilate` and `elastic` lie outside TrivialAugment's op
# space (its ops are colour, contrast, sharpness, posterize/solarize, shifts, shears and rotations).
CORRUPTIONS: dict[str, Any] = {
    "noise": lambda x, noise: (x + 0.15 * noise).clamp(0, 1),
    "blur": lambda x, noise: tf().gaussian_blur(x, kernel_size=[_kernel(x)] * 2, sigma=[1.0, 1.0]),
    "contrast": lambda x, noise: tf().adjust_contrast(x, 0.4) if x.shape[1] in (1, 3) else x,
    "shift": lambda x, noise: tf().affine(x, angle=0.0, translate=[x.shape[-1] // 8] * 2, scale=1.0,
                                        shear=[0.0, 0.0]),
    "rotation": lambda x, noise: tf().affine(x, angle=20.0, translate=[0, 0], scale=1.0, shear=[0.0, 0.0],
                                           interpolation=tf().InterpolationMode.BILINEAR),
    "dilate": lambda x, noise: _dilate(x),
    "elastic": lambda x, noise: _elastic(x),
}
DEFAULT_CORRUPTIONS = ("noise", "blur", "contrast", "shift", "rotation")


@EVAL_SETS.register("corrupted", corruptions=DEFAULT_CORRUPTIONS,
                    doc="the test split under fixed corruptions: by default noise, blur, contrast, "
                    "shift, rotation; option `corruptions` picks any of those and dilate, elastic")
def corrupted(data: DataSet, root: str | None = None, **options: Any) -> tuple[Tensor, Tensor]:
    """In the spirit of CIFAR-10-C: every test image under each of some fixed, deterministic corruptions.

    `corruptions`: a list of CORRUPTIONS names (default DEFAULT_CORRUPTIONS): one eval set per corruption is
    `{name: corrupted, label: c_noise, options: {corruptions: [noise]}}`. Same dtype as the test split: a uint8
    set is corrupted in float a chunk at a time and stored back as uint8. Chunk i draws its noise from seed i,
    so a test split of one chunk gets the noise it always had, whichever corruptions are asked for.
    """
    chosen = tuple(options.pop("corruptions", DEFAULT_CORRUPTIONS))
    _no_root_or_options("corrupted", root, options)
    unknown = [c for c in chosen if c not in CORRUPTIONS]
    if unknown or not chosen or len(set(chosen)) != len(chosen):
        raise ValueError(f"eval set 'corrupted': option corruptions must name each of some of "
                         f"{', '.join(CORRUPTIONS)} once (got {list(chosen)})")
    x, y = data.test_x, data.test_y
    n, suite_size = len(x), len(chosen)
    out = torch.empty((suite_size * n, *x.shape[1:]), dtype=x.dtype)
    for i, start in enumerate(range(0, n, CORRUPTED_CHUNK)):
        chunk = to_float(x[start : start + CORRUPTED_CHUNK])
        noise = torch.randn(chunk.shape, generator=torch.Generator().manual_seed(i))
        for k, name in enumerate(chosen):
            rows = slice(k * n + start, k * n + start + len(chunk))
            image = CORRUPTIONS[name](chunk, noise)
            out[rows] = image if x.is_floating_point() else to_uint8(image)
    return out, y.repeat(suite_size)


