"""A real design sweep (a `design:` block) on digits: the paired start, cells added where the score says, a stop at
the budget, and a SIGKILL of the driver mid-design followed by `resume` with every cell trained exactly once."""

from __future__ import annotations

import subprocess

from conftest import CLI
from test_crash import ENV, driver, kill, read_until

from augworth.results import Store, read_results

SPEC = """\
name: designed
dataset: {name: digits}
model: {name: small_cnn, width: 4}
augmentations: [{policy: none}, {policy: crop, strength: 1}]
data_sizes: [40, 60, 80, 120, 160]
seeds: [0, 1, 2, 3, 4, 5]
budget: {steps: 24, batch_size: 16, eval_every: 24}
optimizer: {lr: 0.05, warmup_steps: 2}
execution: {cells_per_trial: 1}
design:
  targets: [{treatment: "crop(1)", sizes: [100]}]
  tolerance: 0.05
  budget: {cells: 20}
"""


def test_a_design_starts_paired_adds_cells_stops_at_its_budget_and_resumes_after_a_kill(tmp_path):
    (tmp_path / "spec.yaml").write_text(SPEC)
    first = driver("run", "spec.yaml", cwd=tmp_path)
    read_until(first, r"cell \w+ done", count=6)
    kill(first)
    store = Store(tmp_path / "store")
    before = store.done_keys("designed")
    assert 6 <= len(before) < 20
    resumed = subprocess.run([*CLI, "resume", "designed", "--store", "store",
                              "--no-progress"], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "design: the budget is spent" in resumed.stdout and "crop(1) at x = 100" in resumed.stdout, resumed.stdout
    rows = read_results(store, "designed", final_only=True)
    test = rows[rows["eval_set"] == "test"]
    assert test["cell_key"].is_unique and len(test) == 20  # every cell once, and the budget's count of them
    assert before <= set(test["cell_key"])
    # the paired start: both arms at the same 4 sizes x 2 seeds, before anything else
    start = test[test["seed"].isin([0, 1])].groupby(["data_size", "seed"])["augmentation"].nunique()
    assert (start == 2).sum() >= 8 and test["data_size"].nunique() >= 4
    analyzed = subprocess.run([*CLI, "analyze", "designed", "--store", "store",
                               "--json", "--bootstrap", "50"], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                              timeout=120)
    assert analyzed.returncode == 0 and '"effective_extra_samples"' in analyzed.stdout, analyzed.stderr  # as any sweep
    status = subprocess.run([*CLI, "status", "designed", "--store", "store"],
                            cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    assert status.returncode == 0 and "design: the budget is spent" in status.stdout, status.stdout + status.stderr
    # the 40 cells the design did not pick are not missing: a design trains what its targets need
    assert "20 done, 0 failed, 0 running, 40 unchosen" in status.stdout, status.stdout
    assert "missing" not in status.stdout, status.stdout
