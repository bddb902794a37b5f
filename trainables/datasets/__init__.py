"""Data sets, their eval sets, and the training subsets of a cell.

Modules (timm's layout: this `__init__` imports the built-in data sets, so no module imports its importer):
  core     DataSet, the registries DATASETS and EVAL_SETS, loading (cached per process), eval-set requests,
           nested or independent training subsets
  builtin  digits (embedded), synthetic; the test split and the corrupted suite
  files    what the file formats share: root checks, threaded decoding, the .npz cache of decoded folders
  cifar    cifar10, cifar100; eval sets cifar10_test, cifar10c, cifar10_1
  folders  cinic10 (with the paper's recipe), imagefolder
A new data set is one decorated function in a module imported here (or in a plugin, see execution.plugins).
"""

from __future__ import annotations

from . import builtin, cifar, folders  # noqa: F401  (they register)
from .core import (
    DATASETS,
    EVAL_SETS,
    SUBSET_DRAWS,
    DataSet,
    channel_mean,
    create_dataset,
    eval_request,
    eval_set,
    eval_set_fingerprint,
    fingerprint,
    int_option,
    load_dataset,
    make_dataset,
    option_items,
    reject_options,
    subset_indices,
    subset_order,
    to_float,
    to_uint8,
)

__all__ = [
    "DATASETS",
    "EVAL_SETS",
    "SUBSET_DRAWS",
    "DataSet",
    "channel_mean",
    "create_dataset",
    "eval_request",
    "eval_set",
    "eval_set_fingerprint",
    "fingerprint",
    "int_option",
    "load_dataset",
    "make_dataset",
    "option_items",
    "reject_options",
    "subset_indices",
    "subset_order",
    "to_float",
    "to_uint8",
]
