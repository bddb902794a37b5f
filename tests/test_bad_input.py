"""Bad input of every kind: one line on stderr naming the file or key, exit code 2, the store untouched.

In-process through the real typer app (typer's CliRunner), so the table stays cheap; test_cli.py runs the
same command line as subprocesses.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import tiny_spec
from factories import make_cell, rows_for
from typer.testing import CliRunner

from augworth.orchestrator.cli import app
from augworth.results import Store

GOOD = tiny_spec("bad")

SPECS = {  # name: (spec text, what the one line must name)
    "yaml syntax": ("name: [x\n", "syntax error"),
    "not a mapping": ("- 1\n", "must be a mapping"),
    "empty file": ("", "must be a mapping"),
    "unknown top key": (GOOD + "colour: red\n", "colour: unknown key"),
    "unknown nested key": (GOOD.replace("steps: 12,", "steps: 12, epochs: 3,"), "budget.epochs"),
    "duplicate key": (GOOD + "name: other\n", "duplicate key 'name'"),
    "string for int": (GOOD.replace("steps: 12", 'steps: "12"'), "budget.steps"),
    "float for int": (GOOD.replace("steps: 12", "steps: 1e3"), "budget.steps"),
    "bool for int": (GOOD.replace("width: 4", "width: true"), "model.width"),
    "size zero": (GOOD.replace("[40, 80, 160]", "[0, 80]"), "data_sizes[0]"),
    "negative size": (GOOD.replace("[40, 80, 160]", "[40, -8]"), "data_sizes[1]"),
    "size over the pool": (GOOD.replace("[40, 80, 160]", "[40, 99999]"), "data_sizes[1]"),
    "fraction over one": (GOOD.replace("data_sizes: [40, 80, 160]", "data_fractions: [0.5, 1.5]"), "data_fractions[1]"),
    "fraction zero": (GOOD.replace("data_sizes: [40, 80, 160]", "data_fractions: [0]"), "data_fractions[0]"),
    "sizes and fractions": (GOOD.replace("seeds:", "data_fractions: [0.5]\nseeds:"), "exactly one of"),
    "empty seeds": (GOOD.replace("seeds: [0, 1]", "seeds: []"), "seeds"),
    "empty augmentations": (GOOD.replace("augmentations:\n  - {policy: none}\n  - {policy: crop, strength: [1]}",
                                         "augmentations: []"), "augmentations"),
    "bad sweep name": (GOOD.replace("name: bad", "name: ../escape"), "name"),
    "unknown policy": (GOOD.replace("policy: crop", "policy: mixup"), "unknown augmentation 'mixup'"),
    "unknown model": (GOOD.replace("small_cnn", "vit"), "unknown model 'vit'"),
    "unknown data set": (GOOD.replace("{name: digits}", "{name: cifar99}"), "unknown data set 'cifar99'"),
    "digits with a root": (GOOD.replace("{name: digits}", "{name: digits, root: /data}"), "dataset.root"),
    "unknown eval set": (GOOD.replace("[test, corrupted]", "[test, imagenet_c]"), "eval_sets[1]"),
    "negative strength": (GOOD.replace("strength: [1]", "strength: [-2]"), "augmentations[1].strength"),
    "strength on none": (GOOD.replace("{policy: none}", "{policy: none, strength: 1}"), "augmentations[0].strength"),
    "warm-up past the end": (GOOD.replace("warmup_steps: 2", "warmup_steps: 50"), "warmup_steps"),
    "zero lr": (GOOD.replace("lr: 0.05", "lr: 0"), "optimizer.lr"),
    "negative retries": (GOOD.replace("retries: 1", "retries: -1"), "execution.retries"),
    "zero timeout": (GOOD.replace("retries: 1", "retries: 1, timeout_s: 0"), "execution.timeout_s"),
    # the paper's protocol
    "missing data folder": (GOOD.replace("{name: digits}", "{name: cifar10, root: /nonexistent/cifar}"),
                            "/nonexistent/cifar"),
    "file data set without root": (GOOD.replace("{name: digits}", "{name: cinic10}"), "root is required"),
    "unknown data set option": (GOOD.replace("{name: digits}", "{name: synthetic, options: {colour: red}}"),
                                "colour"),
    "missing eval set files": (GOOD.replace("[test, corrupted]", "[test, {name: cifar10c, root: /nonexistent/c}]"),
                               "eval_sets[1]"),
    "eval set on the wrong images": (GOOD.replace("[test, corrupted]", "[test, {name: cifar10_1, root: /tmp}]"),
                                     "eval_sets[1]"),
    "unknown invariance": (GOOD + "invariance: [none, rotate]\n", "unknown invariance 'rotate'"),
    "fixed views without r": (GOOD + "views: [{mode: fixed}]\n", "views[0].r"),
    "same-batch k not dividing the batch": (GOOD + "views: [{mode: same_batch, k: 3}]\n", "views[0].k"),
    "accumulate not dividing the batch": (GOOD.replace("eval_every: 6}", "eval_every: 6, accumulate: 3}"),
                                          "budget.accumulate"),
    "probe step past the budget": (GOOD + "probes: {flatness: true, steps: [99]}\n", "probes.steps[0]"),
    "unknown model in a list": (GOOD.replace("model: {name: small_cnn, width: 4}",
                                             "model: [{name: small_cnn, width: 4}, {name: vit}]"),
                                "model[1].name"),
    "strength over RandAugment's bins": (GOOD.replace("policy: crop, strength: [1]",
                                                      "policy: randaugment_crop_flip, strength: [31]"),
                                         "augmentations[1].strength"),
    # the search block (adaptive mode)
    "search: unknown parameter": (GOOD + "search: {params: {dropout: {low: 0, high: 1}}, trials: 2}\n",
                                  "search.params.dropout"),
    "search: low not below high": (GOOD + "search: {params: {strength: {low: 3, high: 1}}, trials: 2}\n",
                                   "search.params.strength.low"),
    "search: log with low at 0": (GOOD + "search: {params: {lr: {low: 0, high: 0.1, log: true}}, trials: 2}\n",
                                  "search.params.lr.low"),
    "search: momentum of 1": (GOOD + "search: {params: {momentum: {low: 0.5, high: 1}}, trials: 2}\n",
                              "search.params.momentum.high"),
    "search: a strength the policy does not take": (  # flip's strength is a probability
        GOOD.replace("{policy: crop, strength: [1]}", "{policy: flip}")
        + "search: {params: {strength: {low: 0.5, high: 3}}, trials: 2}\n", "search.params.strength.high"),
    "search: strength outside the policy's range": (
        GOOD.replace("{policy: crop, strength: [1]}", "{policy: crop}")
        + "search: {params: {strength: {low: -1, high: 3}}, trials: 2}\n", "search.params.strength.low"),
    "search: a searched strength also given": (
        GOOD + "search: {params: {strength: {low: 1, high: 3}}, trials: 2}\n", "augmentations[1].strength"),
    "search: a searched policy listed twice": (
        GOOD.replace("  - {policy: crop, strength: [1]}",
                     "  - {policy: crop, strength: 1}\n  - {policy: crop, strength: 2}")
        + "search: {params: {lr: {low: 0.01, high: 0.1}}, trials: 2}\n", "augmentations[2].policy"),
    "search: a relative storage path": (
        GOOD + "search: {params: {lr: {low: 0.01, high: 0.1}}, trials: 2, storage: studies.log}\n",
        "search.storage"),
    "search: policy not in augmentations": (
        GOOD + "search: {policies: [flip], params: {lr: {low: 0.01, high: 0.1}}, trials: 2}\n",
        "search.policies[0]"),
    "search: the reference searched": (
        GOOD + "search: {policies: [none], params: {lr: {low: 0.01, high: 0.1}}, trials: 2}\n",
        "search.policies[0]"),
    "search: no trials": (GOOD + "search: {params: {lr: {low: 0.01, high: 0.1}}}\n", "search.trials"),
    "search: unknown sampler": (GOOD + "search: {params: {lr: {low: 0.01, high: 0.1}}, trials: 2, "
                                "sampler: {name: cmaes}}\n", "search.sampler.name"),
    "search: objective on an unknown eval set": (
        GOOD + "search: {params: {lr: {low: 0.01, high: 0.1}}, trials: 2, objective: {eval_set: c10}}\n",
        "search.objective.eval_set"),
    "search: confirmed on a seed the search trains on": (
        GOOD + "search: {params: {lr: {low: 0.01, high: 0.1}}, trials: 2, confirm: {seeds: [5, 1]}}\n",
        "search.confirm.seeds[1]"),
    "search: a confirmation seed twice": (
        GOOD + "search: {params: {lr: {low: 0.01, high: 0.1}}, trials: 2, confirm: {seeds: [5, 5]}}\n",
        "search.confirm.seeds[1]"),
    "search: a negative number of confirmation seeds": (
        GOOD + "search: {params: {lr: {low: 0.01, high: 0.1}}, trials: 2, confirm: {seeds: -1}}\n",
        "search.confirm.seeds"),
    "search: confirmed on an unknown eval set": (
        GOOD + "search: {params: {lr: {low: 0.01, high: 0.1}}, trials: 2, confirm: {eval_set: c10}}\n",
        "search.confirm.eval_set"),
    "search: pruning without intermediate evaluations": (
        GOOD.replace(", eval_every: 6", "") + "search: {params: {lr: {low: 0.01, high: 0.1}}, trials: 2, "
        "pruner: successive_halving}\n", "search.pruner"),
    "design: and a search": (GOOD + "search: {params: {lr: {low: 0.01, high: 0.1}}, trials: 2}\n"
                             "design: {targets: [{treatment: crop, sizes: [80]}]}\n", "design: a sweep has a design"),
    "design: no targets": (GOOD + "design: {targets: []}\n", "design.targets"),
    "design: a zero tolerance": (GOOD + "design: {targets: [{treatment: crop, sizes: [80]}], tolerance: 0}\n",
                                 "design.tolerance"),
    "design: a candidate size the grid lacks": (
        GOOD + "design: {targets: [{treatment: crop, sizes: [80]}], candidates: {sizes: [40, 80, 999]}}\n",
        "design.candidates.sizes[2]"),
    "design: a target size outside the candidates": (
        GOOD + "design: {targets: [{treatment: crop, sizes: [20]}]}\n", "design.targets[0].sizes[0]"),
    "design: a start on one seed": (
        GOOD + "design: {targets: [{treatment: crop, sizes: [80]}], start: {seeds: 1}}\n", "design.start.seeds"),
    "design: an unknown eval set": (
        GOOD + "design: {targets: [{treatment: crop, sizes: [80]}], eval_set: c10}\n", "design.eval_set"),
    "design: a treatment the grid lacks": (
        GOOD + "design: {targets: [{treatment: flip, sizes: [80]}]}\n", "design.targets[0].treatment"),
    "design: the reference as a target": (
        GOOD + "design: {targets: [{treatment: none, sizes: [80]}]}\n", "design.targets[0].treatment"),
    "design: exploring always": (
        GOOD + "design: {targets: [{treatment: crop, sizes: [80]}], explore: 1}\n", "design.explore"),
}

ARGS = {  # name: (arguments after the store is set up, what the one line must name)
    "missing spec file": (["run", "nope.yaml"], "nope.yaml: file not found"),
    "spec is a folder": (["run", "."], "cannot read"),
    "query: no such sweep": (["query", "ghost", "SELECT 1"], "no sweep 'ghost'"),
    "query: bad sweep name": (["query", "../up", "SELECT 1"], "bad sweep name"),
    "query: bad SQL": (["query", "have", "SELEKT 1"], "query failed"),
    "analyze: no such sweep": (["analyze", "ghost"], "no sweep 'ghost'"),
    "analyze: unknown eval set": (["analyze", "have", "--eval-set", "nope"], "--eval-set 'nope'"),
    "analyze: unknown reference": (["analyze", "have", "--reference", "flip"], "--reference 'flip'"),
    "analyze: unknown treatment to compare": (
        ["analyze", "have", "--compare", "flip", "crop", "--reference", "crop"],
        "--compare: no treatment 'flip' in the results"),
    "status: no such sweep": (["status", "ghost"], "no sweep 'ghost'"),
    "verify: absolute name": (["verify", "/etc"], "bad sweep name"),
    "compact: no such sweep": (["compact", "ghost"], "no sweep 'ghost'"),
    "resume: no such sweep": (["resume", "ghost"], "no sweep 'ghost'"),
    "run: --smoke on a spec without smoke": (["run", "spec.yaml", "--smoke"], "smoke"),
    "submit: relative store": (["submit", "spec.yaml", "--address", "http://127.0.0.1:1", "--store", "rel"],
                               "absolute path"),
    "store: unknown scheme": (["query", "have", "SELECT 1", "--store", "nosuch://bucket/x"], "--store"),
}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A folder with a store holding one sweep ('have', one cell) and a valid spec.yaml."""
    monkeypatch.chdir(tmp_path)
    store = Store(tmp_path / "store")
    cell = make_cell()
    store.write_cell("have", cell.cell_key, rows_for(cell))
    store.write_spec("have", "name: have\n")
    (tmp_path / "spec.yaml").write_text(GOOD)
    return tmp_path


def snapshot(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


def assert_one_line_exit_2(result, needle: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr


@pytest.mark.parametrize("case", list(SPECS))
def test_a_malformed_spec_is_one_line_exit_2_and_writes_nothing(workdir, case):
    text, needle = SPECS[case]
    (workdir / "bad.yaml").write_text(text)
    before = snapshot(workdir / "store")
    result = CliRunner().invoke(app, ["run", "bad.yaml", "--store", "store"])
    assert_one_line_exit_2(result, needle)
    assert "bad.yaml" in result.stderr
    assert snapshot(workdir / "store") == before


@pytest.mark.parametrize("case", list(ARGS))
def test_bad_arguments_are_one_line_exit_2_and_write_nothing(workdir, case):
    args, needle = ARGS[case]
    if "--store" not in args:
        args = [*args, "--store", "store"]
    before = snapshot(workdir / "store")
    assert_one_line_exit_2(CliRunner().invoke(app, args), needle)
    assert snapshot(workdir / "store") == before
