"""The paper's three questions (`analysis.questions`, `analysis.stochasticity`) against synthetic sweeps with a
known truth and seeds shared across treatments, and `analyze --question` / `report` from the command line."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_cli import in_process

from augworth.analysis.questions import invariance, ood, shift_kind
from augworth.analysis.stochasticity import stochasticity
from augworth.results import Store
from bench.synthetic import (
    REF,
    SHIFTED_AUG,
    SHIFTED_REF,
    invariance_frame,
    synthetic_sweeps,
    true_v,
    two_sets,
    views_frame,
)


def test_shift_kinds_follow_the_op_space():
    assert shift_kind(["shift", "contrast"], ["noise"]) == ("held-out", "")
    assert shift_kind(["shift", "contrast"], ["contrast"]) == ("covered", "contrast")
    assert shift_kind(["shift"], ["noise", "shift"]) == ("partly covered", "shift")
    assert shift_kind(["shift"], []) == ("undeclared", "")


def test_ood_intervals_hold_the_true_difference_and_find_a_real_one():
    rows = ood(two_sets(12), covers={"crop": ["shift"]}, corruptions={"c_noise": ["noise"]}, n_bootstrap=200)
    assert set(rows["shift"]) == {"held-out"} and len(rows) == 12 * 6
    x = rows["data_size"].to_numpy(float)
    truth = true_v(x, SHIFTED_REF, SHIFTED_AUG) - true_v(x)
    held = (rows["v_diff_ci_low"] <= truth) & (truth <= rows["v_diff_ci_high"])
    assert held.mean() >= 0.85, held.mean()
    assert rows["differs"].mean() >= 0.9  # the truth differs 4-10x: 10 seeds find it
    # the same truth on both sets, their seed effects and noise drawn independently: rarely a claimed difference
    same = ood(two_sets(12, aug_shifted=(1.5, 0.04, 0.5), ref_shifted=REF, rng_seed=2, shifted_rng_seed=3),
               n_bootstrap=200)
    assert same["differs"].mean() <= 0.1 and set(same["shift"]) == {"undeclared"}


def test_invariance_against_augmentation_holds_the_truth_and_its_trend():
    inv_truth = (1.2, 0.04, 0.5)  # the invariant model is worth more than crop at every size
    rows = invariance(invariance_frame(10, inv_truth), n_bootstrap=200)
    assert set(rows["invariant_model"]) == {"none [invariance=center_of_mass]"}
    assert set(rows["augmentation"]) == {"crop"}
    x = rows["data_size"].to_numpy(float)
    truth = true_v(x) - true_v(x, aug=inv_truth)
    held = (rows["v_diff_ci_low"] <= truth) & (truth <= rows["v_diff_ci_high"])
    assert held.mean() >= 0.85 and rows["differs"].mean() >= 0.8
    # the truth's log ratio log(x+v_aug) − log(x+v_inv) is flat in x here (same b and c): the trend's interval
    # holds 0 in most sweeps; a steeper invariant curve (a 3, c 0.7) makes it fall by 0.195 per doubling (the
    # truth's least-squares slope over these sizes), and the trend says so
    trends = rows.drop_duplicates("width")
    assert ((trends["trend_ci_low"] <= 0) & (trends["trend_ci_high"] >= 0)).mean() >= 0.8
    steeper = invariance(invariance_frame(10, (3.0, 0.05, 0.7)), n_bootstrap=50).drop_duplicates("width")
    assert (steeper["trend_ci_high"] < 0).mean() >= 0.8
    assert ((steeper["trend_ci_low"] <= -0.195) & (steeper["trend_ci_high"] >= -0.195)).mean() >= 0.8


def test_stochasticity_repetitions_probe_differences_and_correlations():
    parts = stochasticity(views_frame(), n_bootstrap=200)
    reps = parts["repetitions"]
    assert set(reps["views"]) == {"random", "fixed"}
    fixed4 = reps[(reps["views"] == "fixed") & (reps["r"] == 4)]
    x = fixed4["data_size"].to_numpy(float)
    truth = true_v(x) - true_v(x, aug=(1.7, 0.05, 0.45))  # v_random − v_fixed4
    held = (fixed4["v_random_minus_ci_low"] <= truth) & (truth <= fixed4["v_random_minus_ci_high"])
    assert held.mean() >= 0.85 and fixed4["differs"].mean() >= 0.8
    per_view = true_v(x, aug=(1.7, 0.05, 0.45)) - true_v(x, aug=(1.9, 0.05, 0.45))  # (v_4 − v_1) / 3 · 3
    assert ((fixed4["v_per_extra_view_ci_low"] <= per_view / 3) & (per_view / 3 <= fixed4["v_per_extra_view_ci_high"])
            ).mean() >= 0.85
    diffs = parts["probe_differences"]
    noise = diffs[diffs["probe"] == "grad_noise"]
    assert ((noise["diff_ci_low"] <= -0.5) & (noise["diff_ci_high"] >= -0.5)).mean() >= 0.85  # the truth: −0.5
    corr = parts["correlations"]
    flat = corr[corr["probe"] == "flatness"]  # flatness is 2 × error here: worth more, flatness lower
    assert (flat["r"] < -0.9).all() and (flat["r_ci_high"] < 0).mean() >= 0.9


def test_each_question_says_what_the_sweep_lacks():
    frame = synthetic_sweeps(2).assign(eval_set="test")
    for ask, needs in ((lambda f: ood(f, in_distribution="clean"), "no eval set 'clean'"),
                       (invariance, "no invariance column"), (stochasticity, "no fixed or same-batch views")):
        with pytest.raises(ValueError, match=needs):
            ask(frame)


# ----- the command line, on a store with a synthetic truth ----------------------------------------------

def findings_store(root: Path) -> str:
    """digits_findings' smoke grid, planned for real, every cell written with accuracies from known curves."""
    from augworth.orchestrator.plan import plan_sweep
    from augworth.search_spaces import apply_smoke, load_spec, preset_path

    store = Store(root)
    plan = plan_sweep(apply_smoke(load_spec(preset_path("digits_findings"))).to_yaml(), "findings", store)
    store.write_spec(plan.spec.name, plan.spec.to_yaml())
    store.write_grid(plan.spec.name, [{"cell_key": c.cell_key} | c.to_dict() for c in plan.cells])
    worth = {"crop": 0.75, "trivialaugment": 0.7}
    for cell in plan.cells:
        a = 2.0 * (worth.get(cell.augmentation, 1.0) + 0.1 * (cell.views == "fixed")
                   - 0.1 * (cell.invariance != "none"))
        rng = np.random.default_rng(cell.seed * 1000 + cell.data_size)
        rows = []
        for eval_set, harder in (("test", 0.0), ("c_noise", 0.2), ("c_contrast", 0.1)):
            error = a * cell.data_size ** -0.45 + 0.05 + harder + rng.normal(0.0, 0.004)
            rows.append(cell.to_dict() | {"step": 20, "final": True, "eval_set": eval_set, "accuracy": 1 - error,
                                          "loss": error, "n_eval": 500, "train_seconds": 0.1,
                                          "created_at": dt.datetime.now(dt.UTC),
                                          "grad_noise": 1.0 + 0.3 * (cell.views == "fixed") + rng.normal(0, 0.05),
                                          "flatness": 2.0 * error})
        store.write_cell(plan.spec.name, cell.cell_key, rows)
    return plan.spec.name


@pytest.fixture(scope="module")
def findings(tmp_path_factory):
    root = tmp_path_factory.mktemp("findings")
    return root, findings_store(root / "store")


def test_analyze_question_prints_tables_writes_json_csv_and_a_picture(findings, tmp_path):
    root, sweep = findings
    store = str(root / "store")
    ood_json = in_process("analyze", sweep, "--store", store, "--question", "ood", "--bootstrap", "50", "--json",
                          cwd=tmp_path)
    assert ood_json.returncode == 0, ood_json.stderr
    rows = json.loads(ood_json.stdout)
    kinds = {(r["augmentation"], r["eval_set"]): r["shift"] for r in rows}
    assert kinds[("trivialaugment", "c_contrast")] == "covered" and kinds[("crop", "c_contrast")] == "held-out"
    assert kinds[("trivialaugment", "c_noise")] == "held-out"
    assert all("v_diff_ci_low" in r for r in rows)
    shown = in_process("analyze", sweep, "--store", store, "--question", "invariance", "--bootstrap", "50", "--csv",
                       str(tmp_path / "inv.csv"), "--out", str(tmp_path / "figs"), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "augmentation vs invariance" in shown.stdout and (tmp_path / "figs" / "question_invariance.png").exists()
    assert set(pd.read_csv(tmp_path / "inv.csv")["invariance"]) == {"center_of_mass", "shift_average"}
    views = in_process("analyze", sweep, "--store", store, "--question", "stochasticity", "--bootstrap", "50",
                       "--out", str(tmp_path / "figs"), cwd=tmp_path)
    assert views.returncode == 0, views.stderr
    assert "views on test" in views.stdout and "probes: each view mode" in views.stdout
    bad = in_process("analyze", sweep, "--store", store, "--question", "ethics", cwd=tmp_path)
    assert bad.returncode == 2 and "--question 'ethics'" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


SHIFTED = ("c_contrast", "c_noise")  # the shifted eval sets of digits_findings' smoke grid


def test_a_brief_analysis_prints_the_test_table_a_line_per_shifted_set_and_the_report_command(findings, tmp_path):
    """What `augworth demo` ends with: one table, not one per eval set."""
    root, sweep = findings
    store = str(root / "store")
    brief = in_process("analyze", sweep, "--store", store, "--brief", "--bootstrap", "50", "--out",
                       str(tmp_path / "figs"), cwd=tmp_path)
    assert brief.returncode == 0, brief.stderr
    assert brief.stdout.count("exchange rates on '") == 1 and "exchange rates on 'test'" in brief.stdout
    lines = [line.strip() for line in brief.stdout.splitlines() if line.strip().startswith("c_")]
    assert [line.split(" at x = ")[0].split(":")[0] for line in lines] == list(SHIFTED)
    assert all(("trivialaugment(1)" in line and "crop(2)" in line) or "the reference does not improve" in line
               for line in lines)
    assert f"augworth report {sweep} --store {store}" in brief.stdout
    assert {p.name for p in (tmp_path / "figs").glob("scaling_*.png")} == {f"scaling_{n}.png" for n in
                                                                          ("test", *SHIFTED)}


def test_a_notebook_gets_the_command_lines_analysis_as_a_typed_result(findings, tmp_path):
    # analysis.analyze is the one entry point behind analyze, demo and report
    from augworth.analysis import AnalysisInputError, SweepAnalysis, analyze

    root, sweep = findings
    store = str(root / "store")
    result = analyze(store, sweep, n_bootstrap=50)
    assert isinstance(result, SweepAnalysis) and result.eval_sets == ("test", *SHIFTED)
    printed = in_process("analyze", sweep, "--store", store, "--bootstrap", "50", "--json", cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout) == json.loads(result.rates.to_json(orient="records"))
    pictures = result.draw(tmp_path / "figs")
    assert set(pictures) == set(result.eval_sets) and all(p.exists() for pair in pictures.values() for p in pair)
    assert result.shift_lines()[0].startswith(SHIFTED[0])
    with pytest.raises(AnalysisInputError, match="--reference 'nope'"):
        analyze(store, sweep, reference="nope")


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.refs += [(name, value or "") for name, value in attrs if name in ("src", "href", "srcset", "action")]


def test_the_report_is_one_self_contained_file_that_chromium_renders(findings, tmp_path):
    root, sweep = findings
    target = tmp_path / "r" / "report.html"
    made = in_process("report", sweep, "--store", str(root / "store"), "--bootstrap", "50", "--out", str(target),
                      cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    text = target.read_text()
    parsed = _Refs()
    parsed.feed(text)
    assert parsed.refs and all(name == "src" and value.startswith("data:image/png;base64,")
                               for name, value in parsed.refs)  # figures inlined; no link, no script
    assert "script" not in parsed.tags and "link" not in parsed.tags and "@import" not in text
    for heading in ("Exchange rates", "Question: ood", "Question: invariance", "Question: stochasticity", "Spec",
                    "Reproduce"):
        assert f"<h2>{heading}</h2>" in text
    # the questions' tables are the terminal's, read through one formatter: no raw frame columns, no raw floats
    questions = text[text.index("<h2>Question: ood</h2>"):text.index("<h2>Spec</h2>")]
    assert "<th>shifted − in dist.</th>" in questions and "<th>aug − invariance</th>" in questions
    assert "v_ood_ci_low" not in questions and "v_diff_ci_high" not in questions
    assert "ood: intervals from 2 seeds" in questions  # what the intervals are worth, in the page, not on stderr
    # it opens with what `demo` prints: the test set's rates, then a line per shifted eval set
    assert text.index("<h2>Summary</h2>") < text.index("<h2>Exchange rates</h2>")
    summary = text[text.index("<h2>Summary</h2>"):text.index("<h2>Exchange rates</h2>")]
    assert "exchange rates on &#x27;test&#x27;" in summary and "fits on" not in summary
    assert summary.count("<li>") == len(SHIFTED) and all(f"<li>{name}" in summary for name in SHIFTED)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Chromium is needed to check the report (`make test` installs Debian's chromium)"
    shot = tmp_path / "shot.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
             "--window-size=1280,2400"]
    run = subprocess.run([chromium, *flags, f"--screenshot={shot}", "--dump-dom", target.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and shot.stat().st_size > 10_000, run.stderr[-2000:]
    console = [line for line in run.stderr.splitlines() if "CONSOLE" in line or "Failed to load" in line]
    assert not console, console
    assert run.stdout.count("<table") >= 8 and run.stdout.count("<img") >= 4  # rendered: tables and figures
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert (pixels < 200).mean() > 0.02  # not a blank page: text, tables and figures were drawn


def test_a_question_is_one_decorated_class_that_the_command_line_finds(findings, tmp_path):
    from augworth.analysis.paper_questions import QUESTIONS, Question, register_question

    @register_question("sizes")
    class Sizes(Question):
        def answer(self, results, inputs):
            return {"sizes": results.groupby("augmentation")["data_size"].nunique().reset_index()}

        def draw(self, frames, out_dir):
            return []

        def tables(self, frames):
            from augworth.analysis.tables import frame_table

            return [frame_table(frames["sizes"], "sizes per augmentation")]

    try:
        root, sweep = findings
        shown = in_process("analyze", sweep, "--store", str(root / "store"), "--question", "sizes", cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
        assert "sizes per augmentation" in shown.stdout and "trivialaugment" in shown.stdout
        with pytest.raises(ValueError, match="registered already"):
            register_question("sizes")(Sizes)
    finally:
        QUESTIONS.pop("sizes")
    assert "sizes" not in QUESTIONS
