"""The data set interface (uint8 sets, options, subset draws, synthetic) and the real on-disk formats."""

from __future__ import annotations

import hashlib
import os
import pickle

import numpy as np
import pytest
import torch
from formats import (
    CIFAR10C_MAIN,
    write_cifar10,
    write_cifar10_1,
    write_cifar10c,
    write_cifar100,
    write_cinic10,
    write_imagefolder,
)
from PIL import Image

import augworth.trainables.datasets.core as datasets_core
import augworth.trainables.datasets.folders as folders
from augworth.trainables.datasets import (
    DATASETS,
    EVAL_SETS,
    create_dataset,
    eval_set,
    fingerprint,
    load_dataset,
    make_dataset,
    subset_indices,
    to_float,
)


def nhwc(x: torch.Tensor) -> np.ndarray:
    return x.permute(0, 2, 3, 1).numpy()


def small_synthetic(**over):
    return load_dataset("synthetic", options={"image_size": 8, "pool": 200, "test": 50} | over)


# ----- the interface --------------------------------------------------------------------------------

def test_to_float_scales_uint8_and_passes_float_through_without_a_copy():
    x = torch.tensor([0, 51, 255], dtype=torch.uint8)
    assert torch.allclose(to_float(x), torch.tensor([0.0, 0.2, 1.0])) and to_float(x).dtype == torch.float32
    f = torch.rand(3)
    assert to_float(f) is f


def test_uint8_sets_get_their_mean_in_chunks_and_a_fingerprint_of_their_bytes(monkeypatch):
    monkeypatch.setattr(datasets_core, "STATS_CHUNK", 3)  # several chunks, one short
    x = torch.randint(0, 256, (10, 3, 4, 4), dtype=torch.uint8)
    y = torch.arange(10) % 2
    data = make_dataset("u8", x, y, x[:4], y[:4], num_classes=2)
    assert data.train_x.dtype == torch.uint8
    assert np.allclose(data.mean, (x.double() / 255).mean(dim=(0, 2, 3)).numpy())
    assert data.fingerprint == fingerprint(x, y, x[:4], y[:4])
    as_float = make_dataset("f", x.float() / 255, y, x[:4].float() / 255, y[:4], num_classes=2)
    assert as_float.fingerprint != data.fingerprint and np.allclose(as_float.mean, data.mean)


def test_load_dataset_takes_options_as_a_dict_or_pairs_and_caches_them():
    a = load_dataset("synthetic", options={"pool": 100, "test": 20, "image_size": 8})
    b = load_dataset("synthetic", options=(("image_size", 8), ("pool", 100), ("test", 20)))
    assert a is b and a.pool_size == 100 and a.image_size == 8


def test_digits_refuses_root_download_and_options():
    for kwargs in ({"root": "/x"}, {"download": True}, {"options": {"size": 3}}):
        with pytest.raises(ValueError, match="digits"):
            create_dataset("digits", **kwargs)
    with pytest.raises(ValueError, match="unknown option 'size'"):
        create_dataset("digits", options={"size": 3})


def test_synthetic_is_deterministic_float_and_its_classes_differ():
    a = small_synthetic()
    b = create_dataset("synthetic", options={"image_size": 8, "pool": 200, "test": 50})
    assert a.fingerprint == b.fingerprint and torch.equal(a.train_x, b.train_x)
    assert a.train_x.dtype == torch.float32 and a.train_x.min() >= 0 and a.train_x.max() <= 1
    assert a.train_x.shape == (200, 3, 8, 8) and a.test_x.shape == (50, 3, 8, 8) and a.num_classes == 10
    assert torch.bincount(a.train_y, minlength=10).min() >= 15  # balanced
    # nearest class mean, fitted on the pool, beats chance on the test split by far
    means = torch.stack([a.train_x[a.train_y == c].mean(0) for c in range(10)]).flatten(1)
    accuracy = (torch.cdist(a.test_x.flatten(1), means).argmin(1) == a.test_y).float().mean()
    assert accuracy > 0.5
    gray = create_dataset("synthetic", options={"image_size": 8, "pool": 40, "test": 10, "channels": 1, "classes": 4})
    assert gray.channels == 1 and gray.num_classes == 4
    with pytest.raises(ValueError, match="unknown option 'size'.*valid: channels, classes, image_size, pool, test"):
        create_dataset("synthetic", options={"size": 3})


def test_nested_subsets_are_unchanged_and_independent_ones_are_fresh_stratified_draws():
    digits = load_dataset("digits")
    # pinned from the algorithm before `draw` existed
    assert subset_indices(digits, 10, 0)[:5].tolist() == [1066, 1248, 1056, 1018, 427]
    assert int(subset_indices(digits, 100, 3).sum()) == 59690
    assert torch.equal(subset_indices(digits, 100, 3), subset_indices(digits, 100, 3, draw="nested"))
    small, large = subset_indices(digits, 50, 1, "independent"), subset_indices(digits, 200, 1, "independent")
    assert not set(small.tolist()) <= set(large.tolist())  # nested would contain it
    assert set(subset_indices(digits, 50, 1).tolist()) <= set(subset_indices(digits, 200, 1).tolist())
    assert torch.equal(small, subset_indices(digits, 50, 1, "independent"))  # still deterministic
    assert not torch.equal(small, subset_indices(digits, 50, 1))
    counts = torch.bincount(digits.train_y[small], minlength=10)
    assert counts.min() >= 4 and counts.max() <= 6  # stratified
    with pytest.raises(ValueError, match="unknown subset draw 'fresh'"):
        subset_indices(digits, 50, 1, "fresh")


def test_test_and_corrupted_take_no_root_or_options_and_corrupted_keeps_uint8():
    data = small_synthetic()
    with pytest.raises(ValueError, match="takes no root"):
        eval_set(data, "test", root="/x")
    with pytest.raises(ValueError, match="unknown option 'severity'"):
        eval_set(data, "corrupted", options={"severity": 3})
    x = (data.test_x * 255).round().to(torch.uint8)
    u8 = make_dataset("u8", x, data.test_y, x, data.test_y, num_classes=10)
    cx, cy = eval_set(u8, "corrupted")
    fx, _ = EVAL_SETS.create("corrupted", data=make_dataset("f", to_float(x), data.test_y, to_float(x),
                                                            data.test_y, num_classes=10))
    assert cx.dtype == torch.uint8 and cx.shape == (5 * 50, 3, 8, 8) and torch.equal(cy, data.test_y.repeat(5))
    assert (to_float(cx) - fx).abs().max() <= 1 / 255 + 1e-6  # the float suite, rounded


def test_corrupted_picks_corruptions_and_its_default_is_the_five_it_always_held():
    from augworth.trainables.datasets.builtin import CORRUPTIONS, DEFAULT_CORRUPTIONS

    data = small_synthetic()
    whole, labels = eval_set(data, "corrupted")
    parts = [eval_set(data, "corrupted", options={"corruptions": [c]}) for c in DEFAULT_CORRUPTIONS]
    assert torch.equal(whole, torch.cat([x for x, _ in parts])) and all(torch.equal(y, data.test_y) for _, y in parts)
    for name in set(CORRUPTIONS) - set(DEFAULT_CORRUPTIONS):  # outside TrivialAugment's ops: dilate, elastic
        x, y = EVAL_SETS.create("corrupted", data=data, corruptions=(name,))
        again, _ = EVAL_SETS.create("corrupted", data=data, corruptions=(name,))
        assert x.shape == data.test_x.shape and torch.equal(x, again) and not torch.equal(x, data.test_x)
    with pytest.raises(ValueError, match="option corruptions must name each of some of noise, blur.*got .'fog'."):
        eval_set(data, "corrupted", options={"corruptions": ["fog"]})


# ----- CIFAR-10 and CIFAR-100 -----------------------------------------------------------------------

def test_cifar10_reads_torchvision_format_as_uint8(tmp_path):
    written = write_cifar10(tmp_path, n_train_per_batch=3, n_test=4)
    data = create_dataset("cifar10", str(tmp_path))
    assert data.train_x.shape == (15, 3, 32, 32) and data.train_x.dtype == torch.uint8
    assert data.test_x.shape == (4, 3, 32, 32) and data.num_classes == 10
    assert np.array_equal(nhwc(data.train_x), written["train_x"])
    assert np.array_equal(nhwc(data.test_x), written["test_x"])
    assert data.train_y.tolist() == written["train_y"].tolist() and data.train_y.dtype == torch.int64
    assert data.train_x[7, 1, 5, 9] == written["train_x"][7, 5, 9, 1]  # channel-first, green plane
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "rb") as f:  # as the CIFAR page reads them
        raw = pickle.load(f, encoding="bytes")
    assert raw[b"data"].shape == (3, 3072) and raw[b"data"].dtype == np.uint8 and b"labels" in raw


def test_cifar100_fine_and_coarse_labels(tmp_path):
    written = write_cifar100(tmp_path, n_train=12, n_test=6)
    fine = create_dataset("cifar100", str(tmp_path))
    coarse = create_dataset("cifar100", str(tmp_path), options={"labels": "coarse"})
    assert fine.num_classes == 100 and coarse.num_classes == 20
    assert fine.train_y.tolist() == written["train_fine"].tolist()
    assert coarse.train_y.tolist() == written["train_coarse"].tolist()
    assert coarse.test_y.tolist() == written["test_coarse"].tolist()
    assert torch.equal(fine.train_x, coarse.train_x) and fine.fingerprint != coarse.fingerprint
    with pytest.raises(ValueError, match="labels must be one of fine, coarse"):
        create_dataset("cifar100", str(tmp_path), options={"labels": "super"})


def test_cifar_missing_files_and_root_give_one_line_errors_naming_the_path(tmp_path):
    write_cifar10(tmp_path, 1, 1)
    missing = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    missing.unlink()
    with pytest.raises(FileNotFoundError) as info:
        create_dataset("cifar10", str(tmp_path))
    message = str(info.value)
    assert message.startswith(f"cifar10: {missing} not found (expected torchvision's CIFAR-10") and "\n" not in message
    with pytest.raises(ValueError, match="cifar10: root is required"):
        create_dataset("cifar10")
    with pytest.raises(ValueError, match=r"cifar10: unknown option 'labels' \(it takes none\)"):
        create_dataset("cifar10", str(tmp_path), options={"labels": "fine"})


# ----- CINIC-10 -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cinic(tmp_path_factory):
    root = tmp_path_factory.mktemp("cinic")
    return root, write_cinic10(root, n_per_class_per_split=2, n_cifar_per_class=1, n_duplicates=3)


def test_cinic10_standard_recipe_is_train_and_test_with_grayscale_as_rgb(cinic, tmp_path):
    root, written = cinic
    data = create_dataset("cinic10", str(root), options={"cache_dir": str(tmp_path)})
    everything = written["imagenet"] | written["cifar"] | written["duplicates"]
    train = sorted(rel for rel in everything if rel.startswith("train/"))
    test = sorted(rel for rel in everything if rel.startswith("test/"))
    assert data.train_x.shape == (len(train), 3, 32, 32) and data.test_x.shape == (len(test), 3, 32, 32)
    assert data.train_x.dtype == torch.uint8 and data.num_classes == 10
    assert data.train_y.tolist() == [everything[rel][0] for rel in train]  # labels in CIFAR-10's order
    assert np.array_equal(nhwc(data.train_x), np.stack([everything[rel][1] for rel in train]))
    gray = [rel for rel in train if Image.open(root / rel).mode == "L"]
    assert gray and all(np.array_equal(everything[rel][1][..., 0], everything[rel][1][..., 2]) for rel in gray)
    with pytest.raises(ValueError, match="cinic10: download is not supported"):
        create_dataset("cinic10", str(root), download=True)
    with pytest.raises(ValueError, match="holdout applies to recipe: paper only"):
        create_dataset("cinic10", str(root), options={"holdout": 5})


def test_cinic10_paper_recipe_drops_cifar_and_duplicates_and_holds_out_a_fixed_shuffle(cinic, tmp_path, monkeypatch):
    root, written = cinic
    options = {"recipe": "paper", "holdout": 7, "cache_dir": str(tmp_path / "a")}
    data = create_dataset("cinic10", str(root), options=options)
    distinct = written["imagenet"]  # the duplicates repeat these, the CIFAR ones are dropped
    assert data.pool_size + len(data.test_y) == len(distinct) and len(data.test_y) == 7
    images = {bytes(nhwc(x[None])[0].tobytes()): int(y) for x, y in zip(torch.cat([data.train_x, data.test_x]),
                                                                         torch.cat([data.train_y, data.test_y]),
                                                                         strict=True)}
    assert len(images) == len(distinct)  # no image twice
    assert all(images[pixels.tobytes()] == label for label, pixels in distinct.values())
    cifar = {pixels.tobytes() for _, pixels in written["cifar"].values()}
    assert not cifar & set(images)
    # exactly the paper's code's split: first copy (by md5 of the file) in path order, randperm seeded 233
    firsts: dict[str, str] = {}
    for rel in sorted(set(written["imagenet"]) | set(written["duplicates"])):
        firsts.setdefault(hashlib.md5((root / rel).read_bytes()).hexdigest(), rel)
    unique = sorted(firsts.values())
    order = torch.randperm(len(unique), generator=torch.Generator().manual_seed(233)).tolist()
    pixels = written["imagenet"] | written["duplicates"]
    assert [nhwc(x[None])[0].tobytes() for x in data.test_x] == [pixels[unique[i]][1].tobytes() for i in order[-7:]]

    real_scandir = os.scandir

    class Reversed:  # a file system that lists in another order
        def __init__(self, path):
            self.entries = list(reversed(list(real_scandir(path))))

        def __enter__(self):
            return iter(self.entries)

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(folders.os, "scandir", Reversed)
    again = create_dataset("cinic10", str(root), options=options | {"cache_dir": str(tmp_path / "b")})
    assert again.fingerprint == data.fingerprint and torch.equal(again.train_y, data.train_y)


def test_decoded_images_are_cached_and_an_unreadable_cache_is_rebuilt(cinic, tmp_path, monkeypatch):
    root, _ = cinic
    options = {"cache_dir": str(tmp_path)}
    first = create_dataset("cinic10", str(root), options=options)
    (cache_file,) = tmp_path.glob("cinic10-*.npz")
    assert not list(tmp_path.glob(".*tmp*"))  # the temp file was renamed into place

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although cached")

    with monkeypatch.context() as m:
        m.setattr(folders, "decode_images", no_decoding)
        cached = create_dataset("cinic10", str(root), options=options)
    assert cached.fingerprint == first.fingerprint and torch.equal(cached.train_x, first.train_x)

    cache_file.write_bytes(cache_file.read_bytes()[:200])  # truncated, as by a crash mid-write of another tool
    with pytest.warns(UserWarning, match="rebuilding"):
        rebuilt = create_dataset("cinic10", str(root), options=options)
    assert rebuilt.fingerprint == first.fingerprint
    with np.load(cache_file, allow_pickle=False) as z:
        assert np.array_equal(z["train_x"], first.train_x.numpy())
    monkeypatch.setenv("AUGWORTH_CACHE", str(tmp_path / "env"))
    create_dataset("cinic10", str(root))
    assert list((tmp_path / "env").glob("cinic10-*.npz"))


def test_cinic10_missing_class_folder_names_it(tmp_path):
    (tmp_path / "train" / "airplane").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=f"cinic10: {tmp_path / 'train' / 'automobile'} not found"):
        create_dataset("cinic10", str(tmp_path), options={"cache_dir": str(tmp_path)})


# ----- image folders --------------------------------------------------------------------------------

def test_imagefolder_reads_classes_from_train_and_accepts_val(tmp_path):
    written = write_imagefolder(tmp_path, n_train=2, n_test=1, side=12, test_folder="val")
    data = create_dataset("imagefolder", str(tmp_path), options={"cache_dir": str(tmp_path / "cache")})
    assert data.num_classes == 3 and data.train_x.shape == (6, 3, 12, 12) and data.test_x.shape == (3, 3, 12, 12)
    assert data.train_y.tolist() == [0, 0, 1, 1, 2, 2]
    assert np.array_equal(nhwc(data.test_x)[2], written["val/eel/img0.png"][1])
    resized = create_dataset("imagefolder", str(tmp_path), options={"image_size": 6, "grayscale": True,
                                                                    "cache_dir": str(tmp_path / "cache")})
    assert resized.train_x.shape == (6, 1, 6, 6) and resized.train_x.dtype == torch.uint8
    assert len(list((tmp_path / "cache").glob("imagefolder-*.npz"))) == 2  # one per option set


def test_imagefolder_errors_name_the_class_mismatch_and_the_odd_file(tmp_path):
    write_imagefolder(tmp_path, classes=("a", "b"), n_train=1, n_test=1, side=8)
    options = {"cache_dir": str(tmp_path / "cache")}
    (tmp_path / "test" / "c").mkdir()
    with pytest.raises(ValueError, match=r"same class folders.*only in test: \['c'\]"):
        create_dataset("imagefolder", str(tmp_path), options=options)
    (tmp_path / "test" / "c").rmdir()
    write_imagefolder(tmp_path / "odd", classes=("b",), n_train=1, n_test=0, side=10)
    os.replace(tmp_path / "odd" / "train" / "b" / "img0.png", tmp_path / "train" / "b" / "odd.png")
    with pytest.raises(ValueError, match=r"train/b/odd.png is 10x10x3, the others 8x8x3.*image_size"):
        create_dataset("imagefolder", str(tmp_path), options=options)
    assert create_dataset("imagefolder", str(tmp_path), options=options | {"image_size": 8}).pool_size == 3
    with pytest.raises(ValueError, match=r"imagefolder: unknown option 'size' \(valid: cache_dir, grayscale"):
        create_dataset("imagefolder", str(tmp_path), options={"size": 8})


# ----- eval sets ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cifar_like():
    x = torch.zeros(20, 3, 32, 32, dtype=torch.uint8)
    y = torch.arange(20) % 10
    return make_dataset("cifar_like", x, y, x[:10], y[:10], num_classes=10)


def test_cifar10c_slices_one_severity_of_each_corruption(tmp_path, cifar_like):
    written = write_cifar10c(tmp_path, n=4, corruptions=CIFAR10C_MAIN + ("saturate",))
    x, y = eval_set(cifar_like, "cifar10c", str(tmp_path), {"severity": 2, "corruptions": ["fog", "snow"]})
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.uint8 and y.dtype == torch.int64
    assert np.array_equal(nhwc(x[:4]), written["fog"][4:8]) and np.array_equal(nhwc(x[4:]), written["snow"][4:8])
    assert set(np.unique(x.numpy() & 7).tolist()) == {2}  # severity 2's marker
    assert y.tolist() == written["labels"][4:8].tolist() * 2
    default, _ = EVAL_SETS.create("cifar10c", data=cifar_like, root=str(tmp_path))  # the 15, not the extra present
    assert len(default) == 15 * 4 and set(np.unique(default.numpy() & 7).tolist()) == {3}
    with pytest.raises(ValueError, match="severity must be an integer in 1..5"):
        eval_set(cifar_like, "cifar10c", str(tmp_path), {"severity": 6})
    with pytest.raises(FileNotFoundError, match=f"cifar10c: {tmp_path / 'spatter.npy'} not found"):
        eval_set(cifar_like, "cifar10c", str(tmp_path), {"corruptions": ["spatter"]})
    (tmp_path / "fog.npy").unlink()
    (tmp_path / "snow.npy").unlink()
    missing = "2 of the 15 benchmark corruptions not found under .*: snow.npy, fog.npy"  # every one named
    with pytest.raises(FileNotFoundError, match=missing):
        EVAL_SETS.create("cifar10c", data=cifar_like, root=str(tmp_path))


def test_cifar10_1_and_cifar10_test(tmp_path, cifar_like):
    written = write_cifar10_1(tmp_path / "c101", n=6)
    x, y = eval_set(cifar_like, "cifar10_1", str(tmp_path / "c101"))
    assert x.shape == (6, 3, 32, 32) and np.array_equal(nhwc(x), written["images"])
    assert y.tolist() == written["labels"].tolist()
    with pytest.raises(FileNotFoundError, match="cifar10.1_v4_data.npy not found"):
        eval_set(cifar_like, "cifar10_1", str(tmp_path / "c101"), {"version": "v4"})
    cifar = write_cifar10(tmp_path / "c10", n_train_per_batch=1, n_test=5)
    for name in ("data_batch_1", "data_batch_2"):  # the test batch alone is enough
        (tmp_path / "c10" / "cifar-10-batches-py" / name).unlink()
    x, y = eval_set(cifar_like, "cifar10_test", str(tmp_path / "c10"))
    assert np.array_equal(nhwc(x), cifar["test_x"]) and y.tolist() == cifar["test_y"].tolist()


def test_cifar_eval_sets_refuse_data_sets_of_another_shape(tmp_path):
    data = small_synthetic()
    for name in ("cifar10c", "cifar10_1", "cifar10_test"):
        with pytest.raises(ValueError, match=f"eval set {name} needs a data set of CIFAR-10's shape.*8x8"):
            EVAL_SETS.create(name, data=data, root=str(tmp_path))
    with pytest.raises(ValueError, match="cifar10c: root is required"):
        EVAL_SETS.create("cifar10c", data=make_dataset("c", torch.zeros(2, 3, 32, 32), torch.tensor([0, 9]),
                                                       torch.zeros(2, 3, 32, 32), torch.tensor([0, 9]), 10))


def test_every_file_format_is_registered():
    assert {"cifar10", "cifar100", "cinic10", "imagefolder", "synthetic", "digits"} <= set(DATASETS)
    assert {"test", "corrupted", "cifar10_test", "cifar10c", "cifar10_1"} <= set(EVAL_SETS)
