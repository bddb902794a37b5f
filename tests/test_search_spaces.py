"""Behaviour of search_spaces: the strict spec (one-line errors naming file, line and key path), YAML 1.2
numbers, fractions -> sizes, the expansion into cells, stable cell keys, and the presets.

Fast and self-contained: search_spaces imports neither Ray nor torch, and neither does this file.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT

from augworth import search_spaces
from augworth.search_spaces import (
    CELL_FIELDS,
    KEY_VERSION,
    Cell,
    Spec,
    SpecError,
    apply_smoke,
    canonical_json,
    cell_key,
    expand_cells,
    grid_size,
    load_spec,
    parse_spec,
    preset_names,
    preset_path,
    resolve_sizes,
)
from augworth.search_spaces.cells import NEUTRAL_DEFAULTS
from augworth.search_spaces.spec import Optimizer
from augworth.search_spaces.yaml_strict import dump_yaml, load_yaml

DEMO_PATH = Path(search_spaces.__file__).parent / "presets" / "digits_demo.yaml"  # as imported
# The demo as it was with 3 seeds and two eval sets, frozen here: the error tests point at its lines, and the
# preset itself may change (test_demo_preset_parses_with_the_expected_values reads the preset).
DEMO_TEXT = """\
# The demo: what is an augmentation worth on scikit-learn's bundled digits (real 8x8 scans, upscaled to 16x16)?
# 5 treatments x 6 sizes x 3 seeds = 90 cells of 300 SGD steps each.
name: digits-demo
dataset: {name: digits}
model: {name: small_cnn, width: 16}
augmentations:
  - {policy: none}
  - {policy: flip}
  - {policy: crop, strength: [1, 2]}
  - {policy: trivialaugment}
data_sizes: [50, 100, 200, 400, 800, 1200]
seeds: [0, 1, 2]
budget: {steps: 300, batch_size: 64, eval_every: 100}
optimizer: {lr: 0.05, momentum: 0.9, nesterov: true, weight_decay: 5e-4, warmup_steps: 30}
eval_sets: [test, corrupted]
execution: {cpus_per_cell: 1, gpus_per_cell: 0, retries: 2}
description: "the demo on scikit-learn's bundled digits (none, flip, crop 1 and 2, TrivialAugment; 6 sizes, 3 seeds)"
"""
DEMO_DICT = load_yaml(DEMO_TEXT)
SRC = "bad.yaml"
STRENGTH = "augmentations[2].strength"


def demo() -> dict[str, Any]:
    """A fresh, editable copy of the demo spec as plain data."""
    return copy.deepcopy(DEMO_DICT)


def dump(data: Any) -> str:
    """JSON is YAML 1.2, quotes every string (so "100" stays a string) and puts each key on its own line."""
    return json.dumps(data, indent=2)


def edit(fn) -> str:
    d = demo()
    fn(d)
    return dump(d)


def replace_line(old: str, new: str) -> str:
    assert DEMO_TEXT.count(old) == 1, old
    return DEMO_TEXT.replace(old, new)


def no_strength(policy: str) -> float | None:
    return None


def expand(spec: Spec, *, pool_size: int = 1797, num_classes: int = 10, default_strength=no_strength,
           fingerprint: str = "fp0", text: str | None = None, source: str = "spec") -> list[Cell]:
    return expand_cells(spec, pool_size=pool_size, num_classes=num_classes, dataset_fingerprint=fingerprint,
                        default_strength=default_strength, text=text, source=source)


def parse_error(text: str, source: str = SRC) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse_spec(text, source)
    err = info.value
    assert "\n" not in str(err), f"not one line: {str(err)!r}"
    assert str(err).startswith(source), str(err)
    assert err.source == source
    return err


# ----- the valid demo --------------------------------------------------------------------------------

def test_demo_preset_parses_with_the_expected_values():
    preset = parse_spec(DEMO_PATH.read_text(), str(DEMO_PATH))
    assert preset.seeds == [0, 1, 2, 3, 4] and len(preset.eval_sets) == 8  # >= 5 seeds, one set per corruption
    assert preset.budget.eval_every is None  # the last step only: the demo's 8 eval sets cost time
    assert preset.model_dump(exclude={"seeds", "eval_sets", "description", "budget"}) == \
        parse_spec(DEMO_TEXT).model_dump(exclude={"seeds", "eval_sets", "description", "budget"})
    spec = parse_spec(DEMO_TEXT, str(DEMO_PATH))
    assert spec.name == "digits-demo"
    assert spec.model.width == 16
    assert [a.policy for a in spec.augmentations] == ["none", "flip", "crop", "trivialaugment"]
    assert spec.augmentations[2].strength == (1.0, 2.0)
    assert spec.data_sizes == [50, 100, 200, 400, 800, 1200] and spec.data_fractions is None
    assert spec.budget.eval_every == 100
    assert spec.optimizer.nesterov is True
    assert spec.execution.retries == 2
    # the JSON rewriting used by the error table is itself valid and means the same spec
    assert parse_spec(dump(demo())) == spec


# ----- malformed specs: one line, the file, the key path -------------------------------------------

def _set(path: str, value: Any):
    """An edit that sets `a.b[1].c` = value (value DELETE removes the key)."""
    parts = [int(p) if p.isdigit() else p for p in re.findall(r"[^.\[\]]+", path)]

    def fn(d):
        for p in parts[:-1]:
            d = d[p]
        if value is DELETE:
            del d[parts[-1]]
        else:
            d[parts[-1]] = value
    return fn


DELETE = object()


def _fractions(values):
    def fn(d):
        del d["data_sizes"]
        d["data_fractions"] = values
    return fn


# (id, text, expected key path or None, a fragment of the message)
BAD_SPECS: list[tuple[str, str, str | None, str]] = [
    # syntax
    ("syntax-unclosed-flow", replace_line("seeds: [0, 1, 2]", "seeds: [0, 1, 2"), None, "YAML syntax error"),
    ("syntax-bad-indent", DEMO_TEXT + "  stray: : x\n", None, "YAML syntax error"),
    ("syntax-tab", "name: x\n\tdataset: y\n", None, "YAML syntax error"),
    # duplicate keys
    ("duplicate-top-level", DEMO_TEXT + "seeds: [3]\n", None, "duplicate key 'seeds'"),
    ("duplicate-nested", replace_line("budget: {steps: 300,", "budget: {steps: 300, steps: 200,"), None,
     "duplicate key 'steps'"),
    ("duplicate-in-item", replace_line("{policy: flip}", "{policy: flip, policy: crop}"), None,
     "duplicate key 'policy'"),
    ("non-scalar-key", "? [a, b]\n: 1\n", None, "key must be a scalar"),
    ("bad-explicit-int", replace_line("seeds: [0, 1, 2]", "seeds: [0, !!int 0b11]"), None, "not an integer"),
    ("bad-explicit-float", replace_line("lr: 0.05", "lr: !!float fast"), None, "not a float"),
    # unknown keys
    ("unknown-top-level", edit(_set("epochs", 3)), "epochs", "unknown key"),
    ("unknown-in-budget", edit(_set("budget.epochs", 3)), "budget.epochs", "unknown key"),
    ("unknown-in-augmentation", edit(_set("augmentations[1].p", 0.5)), "augmentations[1].p", "unknown key"),
    ("unknown-in-optimizer", edit(_set("optimizer.beta", 0.5)), "optimizer.beta", "unknown key"),
    ("unknown-in-execution", edit(_set("execution.gpus", 1)), "execution.gpus", "unknown key"),
    # wrong types: no coercion
    ("size-as-string", edit(_set("data_sizes[0]", "100")), "data_sizes[0]", "'100'"),
    ("width-as-string", edit(_set("model.width", "16")), "model.width", "'16'"),
    ("steps-true", edit(_set("budget.steps", True)), "budget.steps", "integer"),
    ("seed-true", edit(_set("seeds[0]", True)), "seeds[0]", "integer"),
    ("seed-float", edit(_set("seeds[1]", 1.5)), "seeds[1]", "1.5"),
    ("steps-float", edit(_set("budget.steps", 300.0)), "budget.steps", "integer"),
    ("strength-string", edit(_set("augmentations[2].strength", "2")), "augmentations[2].strength", "'2'"),
    ("strength-string-in-list", edit(_set("augmentations[2].strength", [1, "2"])), STRENGTH, "'2'"),
    ("strength-bool", edit(_set("augmentations[2].strength", True)), "augmentations[2].strength", "True"),
    ("strength-dict", edit(_set(STRENGTH, {"a": 1})), STRENGTH, "number"),
    ("strength-empty-list", edit(_set(STRENGTH, [])), STRENGTH, "empty"),
    ("seeds-dict", edit(_set("seeds", {"a": 1})), "seeds", "list"),
    ("augmentations-dict", edit(_set("augmentations", {"policy": "none"})), "augmentations", "list"),
    ("sizes-scalar", edit(_set("data_sizes", 100)), "data_sizes", "list"),
    ("dataset-string", edit(_set("dataset", "digits")), "dataset", ""),
    ("name-int", edit(_set("name", 7)), "name", "string"),
    ("lr-string", edit(_set("optimizer.lr", "0.1")), "optimizer.lr", "'0.1'"),
    ("nesterov-string", edit(_set("optimizer.nesterov", "true")), "optimizer.nesterov", "'true'"),
    ("nesterov-yes", replace_line("nesterov: true", "nesterov: yes"), "optimizer.nesterov", "'yes'"),
    ("nesterov-on", replace_line("nesterov: true", "nesterov: on"), "optimizer.nesterov", "'on'"),
    ("retries-string", edit(_set("execution.retries", "2")), "execution.retries", "'2'"),
    ("steps-1e3", replace_line("steps: 300", "steps: 1e3"), "budget.steps", "1000.0"),
    # missing required keys
    ("missing-name", edit(_set("name", DELETE)), "name", "missing key"),
    ("missing-dataset", edit(_set("dataset", DELETE)), "dataset", "missing key"),
    ("missing-policy", edit(_set("augmentations[0].policy", DELETE)), "augmentations[0].policy",
     "missing key"),
    ("missing-model-name", edit(_set("model.name", DELETE)), "model.name", "missing key"),
    ("missing-seeds", edit(_set("seeds", DELETE)), "seeds", "missing key"),
    # sizes and fractions
    ("size-0", edit(_set("data_sizes[0]", 0)), "data_sizes[0]", "greater than 0"),
    ("size-negative", edit(_set("data_sizes[3]", -5)), "data_sizes[3]", "greater than 0"),
    ("fraction-0", edit(_fractions([0.5, 0])), "data_fractions[1]", "greater than 0"),
    ("fraction-1.5", edit(_fractions([0.5, 1.5])), "data_fractions[1]", "less than or equal to 1"),
    ("fraction-negative", edit(_fractions([-0.1])), "data_fractions[0]", "greater than 0"),
    ("fraction-string", edit(_fractions(["0.5"])), "data_fractions[0]", "'0.5'"),
    ("fractions-empty", edit(_fractions([])), "data_fractions", "at least 1"),
    ("sizes-and-fractions", edit(_set("data_fractions", [0.5])), "data_fractions", "exactly one"),
    ("neither-sizes-nor-fractions", edit(_set("data_sizes", DELETE)), None, "exactly one"),
    ("sizes-null", edit(_set("data_sizes", None)), None, "exactly one"),
    ("sizes-empty", edit(_set("data_sizes", [])), "data_sizes", "at least 1"),
    ("duplicate-sizes", edit(_set("data_sizes", [50, 100, 50])), "data_sizes[2]", "duplicate data size 50"),
    ("duplicate-fractions", edit(_fractions([0.1, 0.1])), "data_fractions[1]", "duplicate data fraction"),
    # grid
    ("augmentations-empty", edit(_set("augmentations", [])), "augmentations", "at least 1"),
    ("seeds-empty", edit(_set("seeds", [])), "seeds", "at least 1"),
    ("seed-negative", edit(_set("seeds[0]", -1)), "seeds[0]", "greater than or equal to 0"),
    ("duplicate-seeds", edit(_set("seeds", [0, 1, 1])), "seeds[2]", "duplicate seed 1"),
    ("eval-sets-empty", edit(_set("eval_sets", [])), "eval_sets", "at least 1"),
    ("duplicate-eval-sets", edit(_set("eval_sets", ["test", "test"])), "eval_sets[1]", "duplicate eval set"),
    ("width-0", edit(_set("model.width", 0)), "model.width", "greater than 0"),
    ("batch-size-0", edit(_set("budget.batch_size", 0)), "budget.batch_size", "greater than 0"),
    ("eval-every-0", edit(_set("budget.eval_every", 0)), "budget.eval_every", "greater than 0"),
    ("retries-negative", edit(_set("execution.retries", -1)), "execution.retries", "greater than or equal"),
    ("cpus-0", edit(_set("execution.cpus_per_cell", 0)), "execution.cpus_per_cell", "greater than 0"),
    ("lr-0", edit(_set("optimizer.lr", 0)), "optimizer.lr", "greater than 0"),
    ("momentum-1", edit(_set("optimizer.momentum", 1.0)), "optimizer.momentum", "less than 1"),
    ("warmup-exceeds-steps", edit(_set("optimizer.warmup_steps", 301)), "optimizer.warmup_steps",
     "exceeds budget.steps (300)"),
    # non-finite numbers
    ("strength-nan", replace_line("strength: [1, 2]", "strength: .nan"), "augmentations[2].strength", "nan"),
    ("strength-inf", replace_line("strength: [1, 2]", "strength: .inf"), "augmentations[2].strength", "inf"),
    ("strength-minus-inf-in-list", replace_line("strength: [1, 2]", "strength: [1, -.inf]"),
     "augmentations[2].strength", "inf"),
    ("lr-inf", replace_line("lr: 0.05", "lr: .inf"), "optimizer.lr", "finite"),
    ("weight-decay-inf", replace_line("weight_decay: 5e-4", "weight_decay: .inf"), "optimizer.weight_decay",
     "finite"),
    ("lr-nan", replace_line("lr: 0.05", "lr: .nan"), "optimizer.lr", "finite"),
    ("cpus-inf", replace_line("cpus_per_cell: 1", "cpus_per_cell: .inf"), "execution.cpus_per_cell",
     "finite"),
    ("fraction-nan", edit(_fractions([0.5])).replace("0.5", ".nan"), "data_fractions[0]", "finite"),
    # bad sweep names (they become folder names)
    ("name-dotdot", edit(_set("name", "../x")), "name", "pattern"),
    ("name-absolute", edit(_set("name", "/abs")), "name", "pattern"),
    ("name-space", edit(_set("name", "a b")), "name", "pattern"),
    ("name-empty", edit(_set("name", "")), "name", "pattern"),
    ("name-hidden", edit(_set("name", ".hidden")), "name", "pattern"),
    ("name-65-chars", edit(_set("name", "a" * 65)), "name", "pattern"),
    ("name-slash-inside", edit(_set("name", "a/b")), "name", "pattern"),
    ("name-trailing-newline", edit(_set("name", "abc\n")), "name", "pattern"),
    ("name-null", edit(_set("name", None)), "name", "string"),
    # not a mapping
    ("a-list", "- name: x\n- seeds: [1]\n", None, "must be a mapping, got list"),
    ("a-scalar", "digits-demo\n", None, "must be a mapping, got str"),
    ("a-number", "42\n", None, "must be a mapping, got int"),
    ("empty-file", "", None, "must be a mapping"),
    ("only-comments", "# nothing here\n", None, "must be a mapping"),
    ("two-documents", DEMO_TEXT + "---\n" + DEMO_TEXT, None, "YAML syntax error"),
]


@pytest.mark.parametrize(("text", "path", "fragment"), [c[1:] for c in BAD_SPECS],
                         ids=[c[0] for c in BAD_SPECS])
def test_a_malformed_spec_is_one_line_naming_the_file_and_key_path(text, path, fragment):
    err = parse_error(text)
    assert fragment in str(err)
    assert err.path == path
    if path is not None:
        assert f" {path}: " in str(err), str(err)
        if "." not in path and "[" not in path and fragment == "missing key":  # no line to point at
            assert str(err) == f"{SRC}: {path}: missing key"
        else:  # the line named is a line of the text (which one: see the next test)
            assert err.line is not None and 1 <= err.line <= len(text.splitlines())
            assert re.match(rf"^{re.escape(SRC)}:{err.line}: {re.escape(path)}: ", str(err)), str(err)


def test_the_error_table_ids_are_unique():
    ids = [c[0] for c in BAD_SPECS]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(("old", "new", "prefix"), [
    ("{name: small_cnn, width: 16}", '{name: small_cnn, width: "16"}', "demo.yaml:5: model.width: "),
    ("strength: [1, 2]", "strength: [1, x]", "demo.yaml:9: augmentations[2].strength: "),
    ("{policy: flip}", "{policy: flip, p: 1}", "demo.yaml:8: augmentations[1].p: unknown key"),
    ("seeds: [0, 1, 2]", "seeds: [0, 1, 2, 1]", "demo.yaml:12: seeds[3]: duplicate seed 1"),
    ("nesterov: true", "nesterov: yes", "demo.yaml:14: optimizer.nesterov: "),
    ("name: digits-demo", "name: ../digits", "demo.yaml:3: name: "),
    ("eval_sets: [test, corrupted]", "eval_sets: [test, corrupted]\nepochs: 3",
     "demo.yaml:16: epochs: unknown key"),
    ("budget: {steps: 300,", "budget: {steps: 300, steps: 30,", "demo.yaml:13: duplicate key 'steps'"),
    ("seeds: [0, 1, 2]", "seeds: [0, 1, 2]]", "demo.yaml:12: YAML syntax error"),
])
def test_the_error_names_the_line_of_the_offending_key(old, new, prefix):
    text = replace_line(old, new)
    assert str(parse_error(text, "demo.yaml")).startswith(prefix)


def test_load_spec_names_the_file_and_writes_nothing(tmp_path):
    bad = tmp_path / "sweep.yaml"
    bad.write_text(replace_line("width: 16", "width: '16'"))
    before = sorted(tmp_path.iterdir())
    with pytest.raises(SpecError) as info:
        load_spec(bad)
    assert str(info.value).startswith(f"{bad}:5: model.width: ")
    assert "\n" not in str(info.value)
    assert sorted(tmp_path.iterdir()) == before


@pytest.mark.parametrize("make", [
    lambda tmp: tmp / "missing.yaml",
    lambda tmp: tmp / "no-such-folder" / "spec.yaml",
    lambda tmp: (tmp / "a-file.yaml", (tmp / "a-file.yaml").write_text("x: 1\n"))[0] / "spec.yaml",
], ids=["missing-file", "missing-folder", "below-a-file"])
def test_a_file_that_is_not_there_is_a_spec_error(tmp_path, make):
    path = make(tmp_path)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(info.value) == f"{path}: file not found"
    assert info.value.source == str(path)


def test_a_folder_or_undecodable_file_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path)
    binary = tmp_path / "spec.yaml"
    binary.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(SpecError, match=r"spec\.yaml: cannot read"):
        load_spec(binary)


def test_load_spec_reads_a_valid_file(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text(DEMO_TEXT, encoding="utf-8")
    assert load_spec(path) == parse_spec(DEMO_TEXT)
    assert load_spec(str(path)) == parse_spec(DEMO_TEXT)


def test_spec_error_is_a_value_error_with_its_parts():
    err = SpecError("bad", source="f.yaml", path="a.b[2]", line=7)
    assert isinstance(err, ValueError)
    assert str(err) == "f.yaml:7: a.b[2]: bad"
    assert (err.source, err.path, err.line, err.reason) == ("f.yaml", "a.b[2]", 7, "bad")
    assert str(SpecError("bad")) == "spec: bad"


# ----- valid edge values -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["a", "a" * 64, "A.b-c_9", "2024-06-01", "1e3", "0o17", "v1.0"])
def test_valid_sweep_names(name):
    assert parse_spec(edit(_set("name", name))).name == name


def test_name_that_yaml_1_1_would_read_as_a_date_is_a_string():
    assert parse_spec(replace_line("name: digits-demo", "name: 2024-06-01")).name == "2024-06-01"


def test_boundaries_that_are_accepted():
    spec = parse_spec(edit(_fractions([1.0, 0.001])))
    assert spec.data_fractions == [1.0, 0.001]
    spec = parse_spec(edit(_set("optimizer.warmup_steps", 300)))  # == steps is fine
    assert spec.optimizer.warmup_steps == 300
    spec = parse_spec(edit(_set("optimizer.momentum", 0)))
    assert spec.optimizer.momentum == 0.0 and isinstance(spec.optimizer.momentum, float)
    spec = parse_spec(edit(_set("seeds", [0])))
    assert spec.seeds == [0]


def test_defaults_of_optional_blocks():
    d = demo()
    for key in ("optimizer", "execution", "eval_sets"):
        del d[key]
    del d["budget"]["eval_every"]
    del d["model"]["width"]
    spec = parse_spec(dump(d))
    # the paper's optimiser; warm-up None = steps / 30 (2,000 of 60,000)
    assert spec.optimizer == Optimizer(lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, warmup_steps=None)
    assert spec.optimizer.resolved_warmup(60_000) == 2_000
    assert spec.execution.retries == 2 and spec.execution.cells_per_trial is None
    assert spec.eval_sets == ["test"]
    assert spec.budget.eval_every is None
    assert spec.model.width is None  # the model registry's default, resolved at expansion
    del d["budget"]
    spec = parse_spec(dump(d))
    assert (spec.budget.steps, spec.budget.batch_size, spec.budget.accumulate) == (60_000, 128, 1)
    assert [v.mode for v in spec.views] == ["random"] and spec.invariance == ["none"] and spec.probes is None


# ----- YAML 1.2 numbers ------------------------------------------------------------------------------

def test_5e_minus_4_is_a_float_unlike_plain_pyyaml():
    assert yaml.safe_load("x: 5e-4")["x"] == "5e-4"  # why the strict loader exists
    spec = parse_spec(DEMO_TEXT)
    assert isinstance(spec.optimizer.weight_decay, float)
    assert spec.optimizer.weight_decay == 0.0005


@pytest.mark.parametrize(("text", "value"), [
    ("5e-4", 0.0005), ("1e3", 1000.0), ("1E3", 1000.0), ("-2.5e+2", -250.0), (".5", 0.5), ("1.", 1.0),
    ("0x10", 16), ("0o17", 15), ("+7", 7), ("-3", -3), ("010", 10),
    ("yes", "yes"), ("no", "no"), ("on", "on"), ("off", "off"), ("y", "y"), ("true", True), ("False", False),
    ("null", None), ("~", None), ("1_000", "1_000"), ("2024-06-01", "2024-06-01"), ("0b11", "0b11"),
])
def test_yaml_1_2_scalars(text, value):
    got = load_yaml(f"x: {text}")["x"]
    assert got == value
    assert type(got) is type(value)


def test_yaml_1_2_nan_and_inf():
    data = load_yaml("a: .nan\nb: -.inf\nc: .Inf")
    assert data["a"] != data["a"]
    assert data["b"] == float("-inf") and data["c"] == float("inf")


def test_steps_1e3_is_a_type_error_and_0x10_is_16():
    err = parse_error(replace_line("steps: 300", "steps: 1e3"))
    assert err.path == "budget.steps"
    text = replace_line("steps: 300", "steps: 0x10").replace("warmup_steps: 30", "warmup_steps: 0")
    spec = parse_spec(text)
    assert spec.budget.steps == 16 and type(spec.budget.steps) is int


def test_an_integer_lr_is_accepted_as_a_float():
    spec = parse_spec(replace_line("lr: 0.05", "lr: 1"))
    assert spec.optimizer.lr == 1.0 and type(spec.optimizer.lr) is float
    spec = parse_spec(replace_line("strength: [1, 2]", "strength: 3"))
    assert spec.augmentations[2].strength == 3.0 and type(spec.augmentations[2].strength) is float


def test_dump_yaml_reads_back_unchanged():
    data = {"s": ["1e3", "0o17", "5e-4", ".5", "yes", "on", "2024-01-01", "0x1F", "010", "+1", "-.inf", "~"],
            "n": [1.0e-5, 0.0005, 1.0, 3, -0.5, True, None], "é": "ünïcode"}
    assert load_yaml(dump_yaml(data)) == data


# ----- fractions -> sizes ----------------------------------------------------------------------------

def _fraction_spec(fractions) -> Spec:
    return parse_spec(edit(_fractions(fractions)))


@pytest.mark.parametrize(("fractions", "pool", "classes", "sizes"), [
    ([0.1, 0.25, 0.5, 1.0], 1000, 10, [100, 250, 500, 1000]),
    ([0.3333], 1000, 10, [333]),        # rounds down
    ([0.3337], 1000, 10, [334]),        # rounds up
    ([0.001], 1000, 10, [10]),          # at least one image per class
    ([0.001, 0.002, 0.5], 1000, 10, [10, 500]),  # 1 and 2 both become 10: collapsed
    ([0.5, 0.1], 1797, 10, [898, 180]),  # order as given (0.5 * 1797 = 898.5 -> round-half-even 898)
    ([1.0], 5, 10, [5]),                # never more than the pool
])
def test_fractions_become_sizes(fractions, pool, classes, sizes):
    spec = _fraction_spec(fractions)
    assert resolve_sizes(spec, pool_size=pool, num_classes=classes) == sizes
    cells = expand(spec, pool_size=pool, num_classes=classes)
    assert list(dict.fromkeys(c.data_size for c in cells)) == sizes
    assert all(type(c.data_size) is int for c in cells)


def test_absolute_sizes_are_kept_as_given():
    spec = parse_spec(DEMO_TEXT)
    assert resolve_sizes(spec, pool_size=1200, num_classes=10) == [50, 100, 200, 400, 800, 1200]


def test_a_size_larger_than_the_pool_is_a_spec_error_naming_the_index():
    spec = parse_spec(DEMO_TEXT)
    with pytest.raises(SpecError) as info:
        resolve_sizes(spec, pool_size=1000, num_classes=10, source="demo.yaml", text=DEMO_TEXT)
    err = info.value
    assert err.path == "data_sizes[5]" and err.line == 11
    assert str(err).startswith("demo.yaml:11: data_sizes[5]: 1200 is larger than the training pool (1000")
    assert "\n" not in str(err)
    with pytest.raises(SpecError, match=r"^demo\.yaml:11: data_sizes\[5\]: "):
        expand(spec, pool_size=1000, source="demo.yaml", text=DEMO_TEXT)
    with pytest.raises(SpecError, match=r"^spec: data_sizes\[3\]: 400 is larger"):
        expand(spec, pool_size=399)  # no text: still the key path, no line


# ----- expansion -------------------------------------------------------------------------------------

DEFAULTS = {"none": None, "flip": None, "crop": 2.0, "trivialaugment": 31.0, "cutout": 4.0}


def test_the_demo_expands_to_sizes_x_seeds_x_strengths():
    spec = parse_spec(DEMO_TEXT)
    cells = expand(spec, default_strength=DEFAULTS.get)
    strengths_per_policy = sum(len(a.strengths()) for a in spec.augmentations)
    assert strengths_per_policy == 5
    assert len(cells) == 6 * 3 * 5 == 90
    assert len({c.cell_key for c in cells}) == 90
    assert {(c.augmentation, c.strength) for c in cells} == {
        ("none", None), ("flip", None), ("crop", 1.0), ("crop", 2.0), ("trivialaugment", 31.0)}


def test_cells_carry_the_spec_values():
    spec = parse_spec(replace_line(", eval_every: 100", ""))
    cells = expand(spec, fingerprint="sha-abc")
    c = cells[0]
    assert (c.dataset, c.dataset_fingerprint, c.model, c.width) == ("digits", "sha-abc", "small_cnn", 16)
    assert (c.steps, c.batch_size, c.eval_every) == (300, 64, 300)  # eval_every None: the last step only
    assert (c.lr, c.momentum, c.nesterov, c.weight_decay, c.warmup_steps) == (0.05, 0.9, True, 0.0005, 30)
    assert (c.views, c.views_r, c.invariance) == ("random", None, "none")


def test_a_strength_of_none_is_resolved_through_default_strength():
    calls = []

    def default_strength(policy):
        calls.append(policy)
        return {"flip": None, "trivialaugment": 31.0}.get(policy, 7.0)

    cells = expand(parse_spec(DEMO_TEXT), default_strength=default_strength)
    assert set(calls) == {"none", "flip", "trivialaugment"}  # crop gives its strengths, so never asked
    by_policy = {}
    for c in cells:
        by_policy.setdefault(c.augmentation, set()).add(c.strength)
    assert by_policy == {"none": {7.0}, "flip": {None}, "crop": {1.0, 2.0}, "trivialaugment": {31.0}}


def test_duplicate_treatments_collapse_to_one_cell():
    d = demo()
    d["augmentations"] = [
        {"policy": "crop", "strength": 2},
        {"policy": "crop", "strength": [2.0, 3, 2]},
        {"policy": "crop"},  # default 2.0: the same treatment again
        {"policy": "none"},
        {"policy": "none"},
    ]
    spec = parse_spec(dump(d))
    cells = expand(spec, default_strength=DEFAULTS.get)
    assert len(cells) == 6 * 3 * 3
    assert len({c.cell_key for c in cells}) == len(cells)
    assert [(c.augmentation, c.strength) for c in cells[:3]] == [("crop", 2.0), ("crop", 3.0), ("none", None)]
    # an integer default from a registry is the same treatment as the float the spec gives
    cells_int = expand(spec, default_strength=lambda p: {"crop": 2}.get(p))
    assert [c.cell_key for c in cells_int] == [c.cell_key for c in cells]


def test_expansion_order_is_stable_size_then_seed_then_treatment():
    spec = parse_spec(DEMO_TEXT)
    cells = expand(spec, default_strength=DEFAULTS.get)
    again = expand(parse_spec(DEMO_TEXT), default_strength=DEFAULTS.get)
    assert cells == again
    order = [(c.data_size, c.seed, c.augmentation, c.strength) for c in cells]
    treatments = [("none", None), ("flip", None), ("crop", 1.0), ("crop", 2.0), ("trivialaugment", 31.0)]
    assert order == [(n, s, a, st) for n in spec.data_sizes for s in spec.seeds for a, st in treatments]


# ----- cell keys -------------------------------------------------------------------------------------

CELL_KW: dict[str, Any] = dict(
    dataset="digits", dataset_fingerprint="fp0", data_size=100, seed=1, augmentation="crop", strength=2.0,
    model="small_cnn", width=16, steps=300, batch_size=64, eval_every=100, lr=0.05, momentum=0.9,
    nesterov=True, weight_decay=0.0005, warmup_steps=30,
)
# one different value per field of Cell
PERTURBED: dict[str, Any] = dict(
    dataset="cifar10", dataset_fingerprint="fp1", data_size=101, seed=2, augmentation="flip", strength=2.5,
    model="resnet18", width=32, steps=301, batch_size=32, eval_every=50, lr=0.1, momentum=0.8,
    nesterov=False, weight_decay=0.0, warmup_steps=0, views="paired", views_r=2, invariance="penalty",
    views_first_clean=True, subset="independent", accumulate=2, normalize=True,
)


def make_cell(**changes: Any) -> Cell:
    return Cell(**{**CELL_KW, **changes})


def test_the_key_is_16_hex_characters_of_sha256_of_the_canonical_json():
    cell = make_cell()
    assert re.fullmatch(r"[0-9a-f]{16}", cell.cell_key)
    assert cell.cell_key == cell_key(cell) == hashlib.sha256(canonical_json(cell).encode()).hexdigest()[:16]


def test_canonical_json_is_pinned():
    """Changing this string re-keys every stored cell: bump KEY_VERSION instead of editing it casually."""
    assert KEY_VERSION == 1
    assert canonical_json(make_cell()) == (
        '{"augmentation":"crop","batch_size":64,"data_size":100,"dataset":"digits","dataset_fingerprint":"fp0",'
        '"eval_every":100,"key_version":1,"lr":0.05,"model":"small_cnn","momentum":0.9,"nesterov":true,'
        '"seed":1,"steps":300,"strength":2.0,"warmup_steps":30,"weight_decay":0.0005,"width":16}'
    )


def test_the_same_cell_has_the_same_key_in_another_process():
    code = (
        "import json, sys; from augworth.search_spaces import Cell; "
        "print(Cell(**json.loads(sys.argv[1])).cell_key)"
    )
    keys = set()
    for seed in ("0", "12345"):  # different str hash seeds: nothing may depend on hash()
        out = subprocess.run([sys.executable, "-c", code, json.dumps(CELL_KW)], capture_output=True,
                             text=True, check=True, env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"},
                             cwd=ROOT)
        keys.add(out.stdout.strip())
    assert keys == {make_cell().cell_key}


def test_the_perturbation_table_covers_every_field():
    assert set(PERTURBED) == set(CELL_FIELDS)
    assert set(CELL_KW) | set(NEUTRAL_DEFAULTS) == set(CELL_FIELDS)


@pytest.mark.parametrize("field", CELL_FIELDS)
def test_every_keyed_field_changes_the_key(field):
    base = make_cell()
    changed = dataclasses.replace(base, **{field: PERTURBED[field]})
    assert getattr(changed, field) != getattr(base, field)
    assert changed.cell_key != base.cell_key


def test_strength_none_and_a_strength_give_different_keys():
    assert make_cell(strength=None).cell_key != make_cell(strength=2.0).cell_key


def test_neutral_defaults_are_left_out_of_the_canonical_json():
    data = json.loads(canonical_json(make_cell()))
    assert not set(NEUTRAL_DEFAULTS) & set(data)
    assert data["key_version"] == KEY_VERSION
    explicit = make_cell(**NEUTRAL_DEFAULTS)
    assert explicit.cell_key == make_cell().cell_key
    for field in NEUTRAL_DEFAULTS:
        value = PERTURBED[field]
        cell = make_cell(**{field: value})
        assert json.loads(canonical_json(cell))[field] == value
        assert cell.cell_key != make_cell().cell_key


@pytest.mark.parametrize(("field", "as_int", "as_float"), [
    ("strength", 2, 2.0), ("lr", 1, 1.0), ("weight_decay", 0, 0.0), ("momentum", 0, 0.0)])
def test_an_integer_and_the_equal_float_give_the_same_key(field, as_int, as_float):
    assert make_cell(**{field: as_int}).cell_key == make_cell(**{field: as_float}).cell_key
    assert canonical_json(make_cell(**{field: as_int})) == canonical_json(make_cell(**{field: as_float}))


def test_a_cell_round_trips_through_a_dict_with_its_key():
    cell = make_cell(views_r=3)
    row = {**cell.to_dict(), "cell_key": cell.cell_key, "accuracy": 0.9}  # a store row has more columns
    back = Cell.from_dict(json.loads(json.dumps(row)))
    assert back == cell and back.cell_key == cell.cell_key


def _keys(text: str) -> list[str]:
    return [c.cell_key for c in expand(parse_spec(text), default_strength=DEFAULTS.get)]


def test_execution_settings_and_description_never_change_any_key():
    base = _keys(DEMO_TEXT)
    d = demo()
    d["execution"] = {"retries": 9, "cpus_per_cell": 3.5, "gpus_per_cell": 1, "cells_per_trial": 7,
                      "max_concurrent": 2}
    d["description"] = "the same grid, run differently"
    d["dataset"]["root"] = "/somewhere/else"
    assert _keys(dump(d)) == base
    del d["execution"]
    assert _keys(dump(d)) == base


def test_the_same_cell_has_the_same_key_in_every_sweep():
    other = edit(_set("name", "another-sweep"))
    assert _keys(other) == _keys(DEMO_TEXT)
    # and a sub-grid gives a subset of the keys
    sub = edit(lambda d: (d.update(seeds=[1]), d.update(data_sizes=[100, 800])))
    assert set(_keys(sub)) < set(_keys(DEMO_TEXT))


def test_grid_changes_change_keys():
    base = set(_keys(DEMO_TEXT))
    for fn in (_set("model.width", 32), _set("budget.steps", 400), _set("optimizer.lr", 0.1),
               _set("dataset.name", "cifar10"), _set("budget.eval_every", 50),
               _set("optimizer.nesterov", False)):
        assert not set(_keys(edit(fn))) & base


# ----- to_yaml and grid_fields -----------------------------------------------------------------------

ROUND_TRIP = {
    "demo": DEMO_TEXT,
    "fractions-and-extras": edit(lambda d: (
        _fractions([0.05, 0.5, 1.0])(d), d.update(description="what is flip worth?"),
        d["dataset"].update(root="/data/x"), d["augmentations"].append({"policy": "cutout", "strength": 4}),
        d["budget"].pop("eval_every"), d["execution"].update(cells_per_trial=4, max_concurrent=8))),
    "number-like-strings": edit(lambda d: (
        d.update(name="1e3", description="5e-4"), d["dataset"].update(name="0o17"),
        d["model"].update(name="2024-06-01"), d.update(eval_sets=["yes", "1.5e3", "0x1F"]),
        d["augmentations"].append({"policy": "on"}))),
    "tiny-floats": edit(lambda d: d["optimizer"].update(lr=1e-05, weight_decay=1e-7)),
}


@pytest.mark.parametrize("text", ROUND_TRIP.values(), ids=ROUND_TRIP.keys())
def test_to_yaml_round_trips(text):
    spec = parse_spec(text)
    again = parse_spec(spec.to_yaml(), "frozen.yaml")
    assert again == spec
    assert again.to_yaml() == spec.to_yaml()


def test_grid_fields_ignore_execution_and_description():
    base = parse_spec(DEMO_TEXT)
    d = demo()
    d["execution"] = {"retries": 0, "cells_per_trial": 5}
    d["description"] = "notes"
    other = parse_spec(dump(d))
    assert other != base
    assert other.grid_fields() == base.grid_fields()
    assert "execution" not in base.grid_fields() and "description" not in base.grid_fields()
    assert parse_spec(edit(_set("seeds", [0, 1]))).grid_fields() != base.grid_fields()
    assert parse_spec(edit(_set("eval_sets", ["test"]))).grid_fields() != base.grid_fields()


# ----- presets ---------------------------------------------------------------------------------------

def test_preset_names_and_paths():
    names = preset_names()
    assert "digits_demo" in names
    assert names == sorted(names)
    path = preset_path("digits_demo")
    assert path.is_file() and path == DEMO_PATH
    for name in names:  # every preset shipped is a valid spec
        assert isinstance(load_spec(preset_path(name)), Spec)


def test_an_unknown_preset_lists_the_valid_names():
    with pytest.raises(SpecError) as info:
        preset_path("nope")
    message = str(info.value)
    assert "'nope'" in message and "digits_demo" in message and "\n" not in message
    for name in preset_names():
        assert name in message


def test_search_spaces_imports_neither_ray_nor_torch():
    code = "import sys, augworth.search_spaces; print(sorted({'ray', 'torch'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT)
    assert out.stdout.strip() == "[]"


# ----- the paper's protocol: views, invariance, models, eval sets, probes, smoke ---------------------

def with_(**changes: Any) -> Spec:
    d = demo()
    for key, value in changes.items():
        if value is DELETE:
            del d[key]
        else:
            d[key] = value
    return parse_spec(dump(d))


def test_dataset_normalize_reaches_every_cell_and_is_off_by_default():
    assert {c.normalize for c in expand(with_())} == {False}
    spec = with_(dataset={"name": "digits", "normalize": True})
    assert {c.normalize for c in expand(spec)} == {True}
    for name in preset_names():  # the paper's presets standardise inputs as the paper does; the demo does not
        assert load_spec(preset_path(name)).dataset.normalize == name.startswith("paper_")


def test_exclude_leaves_out_the_points_it_matches_and_grid_size_counts_the_same():
    spec = with_(augmentations=[{"policy": "none"}, {"policy": "flip"}, {"policy": "crop", "strength": 2}],
                 invariance=["none", "average", "orbit_select"],
                 exclude=[{"augmentation": "flip", "invariance": ["average", "orbit_select"]}])
    cells = expand(spec)
    pairs = {(c.augmentation, c.invariance) for c in cells}
    assert ("flip", "none") in pairs and ("crop", "average") in pairs and ("none", "orbit_select") in pairs
    assert not {("flip", "average"), ("flip", "orbit_select")} & pairs
    assert len(cells) == grid_size(spec) == 7 * len(spec.data_sizes or ()) * len(spec.seeds)
    assert with_().exclude == [] and with_().grid_fields() == parse_spec(DEMO_TEXT).grid_fields()  # old specs
    err = parse_error(edit(lambda d: d.update(exclude=[{"augmentaton": "flip"}])))
    assert "exclude[0].augmentaton" in str(err)
    err = parse_error(edit(lambda d: d.update(exclude=[{}])))
    assert "exclude[0]" in str(err) and "at least one of" in str(err)


def test_views_invariance_and_model_lists_multiply_the_grid():
    spec = with_(model=[{"name": "small_cnn", "width": [4, 8]}, {"name": "resnet18", "width": 4}],
                 views=[{"mode": "random"}, {"mode": "fixed", "r": [2, 4], "first_clean": True},
                        {"mode": "same_batch", "k": 2}],
                 invariance=["none", "average"], augmentations=[{"policy": "none"}, {"policy": "flip"}],
                 data_sizes=[100], seeds=[0])
    cells = expand(spec)
    # 3 models x 2 invariances x (none: random + same_batch; flip: random + 2 fixed + same_batch)
    assert len(cells) == 3 * 2 * (2 + 4)
    fixed = [c for c in cells if c.views == "fixed"]
    assert {c.views_r for c in fixed} == {2, 4} and all(c.views_first_clean for c in fixed)
    assert not any(c.augmentation == "none" and c.views == "fixed" for c in cells)
    assert {(c.model, c.width) for c in cells} == {("small_cnn", 4), ("small_cnn", 8), ("resnet18", 4)}
    assert {c.views_r for c in cells if c.views == "same_batch"} == {2}


def test_a_model_without_width_takes_the_default_width_function():
    d = demo()
    del d["model"]["width"]
    spec = parse_spec(dump(d))
    with pytest.raises(SpecError, match="width"):
        expand(spec)
    cells = expand_cells(spec, pool_size=1797, num_classes=10, dataset_fingerprint="fp",
                         default_strength=no_strength, default_width=lambda name: 23)
    assert {c.width for c in cells} == {23}


@pytest.mark.parametrize(("views", "path", "fragment"), [
    ({"mode": "fixed"}, "views[0].r", "needs r"),
    ({"mode": "same_batch", "r": 2}, "views[0].r", "does not apply"),
    ({"mode": "random", "first_clean": True}, "views[0].first_clean", "fixed"),
    ({"mode": "shuffled"}, "views[0].mode", "random"),
    ({"mode": "same_batch", "k": 3}, "views[0].k", "multiple of k"),
])
def test_bad_views_name_their_key(views, path, fragment):
    err = parse_error(edit(lambda d: d.update(views=[views])))
    assert err.path == path and fragment in str(err)


def test_accumulate_must_divide_the_batch():
    err = parse_error(edit(lambda d: d["budget"].update(accumulate=5)))
    assert err.path == "budget.accumulate"
    spec = parse_spec(edit(lambda d: d["budget"].update(accumulate=4)))
    assert {c.accumulate for c in expand(spec)} == {4}


def test_eval_sets_take_a_mapping_with_a_label_root_and_options():
    spec = with_(eval_sets=["test", {"name": "cifar10c", "label": "c_s5", "root": "/data/c",
                                     "options": {"severity": 5, "corruptions": ["fog", "snow"]}}])
    assert spec.eval_requests() == [
        {"label": "test", "name": "test", "root": None, "options": {}},
        {"label": "c_s5", "name": "cifar10c", "root": "/data/c",
         "options": {"severity": 5, "corruptions": ["fog", "snow"]}},
    ]
    err = parse_error(edit(lambda d: d.update(eval_sets=["test", {"name": "cifar10c", "label": "test"}])))
    assert err.path == "eval_sets[1]" and "duplicate" in str(err)
    err = parse_error(edit(lambda d: d.update(eval_sets=[{"name": "cifar10c", "severity": 3}])))
    assert err.path == "eval_sets[0].severity" and "unknown key" in str(err)


def test_eval_sets_and_probes_never_change_a_key():
    base = {c.cell_key for c in expand(parse_spec(DEMO_TEXT))}
    spec = with_(eval_sets=["test"], probes={"grad_noise": True, "flatness": True, "steps": [100, 300]})
    assert {c.cell_key for c in expand(spec)} == base
    assert spec.probes.which() == ["grad_noise", "flatness"]


def test_a_probe_step_past_the_budget_is_an_error():
    err = parse_error(edit(lambda d: d.update(probes={"hessian": True, "steps": [100, 301]})))
    assert err.path == "probes.steps[1]"


def test_dataset_subsets_and_options():
    spec = with_(dataset={"name": "cinic10", "root": "/data/cinic", "options": {"recipe": "paper"},
                          "subsets": "independent"})
    assert spec.dataset.options == {"recipe": "paper"}
    assert {c.subset for c in expand(spec)} == {"independent"}
    err = parse_error(edit(lambda d: d.update(dataset={"name": "digits", "subsets": "nestled"})))
    assert err.path == "dataset.subsets"


def test_smoke_replaces_whole_top_level_keys_and_renames_the_sweep():
    spec = with_(smoke={"data_sizes": [50], "seeds": [0], "budget": {"steps": 4, "batch_size": 8},
                        "optimizer": {"warmup_steps": 1}})
    small = apply_smoke(spec)
    assert small.name == "digits-demo-smoke" and small.smoke is None
    assert small.budget.steps == 4 and small.budget.eval_every is None  # replaced whole, not merged
    assert small.augmentations == spec.augmentations
    assert len(expand(small)) == 5
    assert spec.grid_fields() == with_().grid_fields()  # the smoke block is not part of the grid
    with pytest.raises(SpecError, match="smoke"):
        apply_smoke(parse_spec(DEMO_TEXT))
    bad = with_(smoke={"budget": {"steps": 0}})
    with pytest.raises(SpecError, match="budget.steps"):
        apply_smoke(bad)


def test_every_paper_preset_parses_and_scales_down():
    names = [n for n in preset_names() if n.startswith("paper_")]
    assert len(names) == 7
    for name in names:
        spec = parse_spec(preset_path(name).read_text(), name)
        assert spec.budget.steps == 60_000 and spec.budget.batch_size == 128
        assert spec.optimizer.resolved_warmup(spec.budget.steps) == 2_000
        small = apply_smoke(spec)
        assert small.dataset.name == "synthetic" and small.budget.steps <= 10


@pytest.mark.parametrize("name", [n for n in preset_names() if n.startswith("paper_")])
def test_paper_presets_round_trip_through_the_frozen_yaml(name):
    spec = parse_spec(preset_path(name).read_text(), name)
    again = parse_spec(spec.to_yaml(), "frozen")
    assert again == spec and again.grid_fields() == spec.grid_fields()
    small = apply_smoke(spec)
    assert parse_spec(small.to_yaml(), "frozen") == small
