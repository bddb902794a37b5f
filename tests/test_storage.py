"""A search's Optuna storage (orchestrator/storage.py): a torn journal is repaired, another driver's journal lock is
left alone, the storage is part of the sweep, a bad storage is bad input with nothing written, and a password is
never frozen into a spec nor shown. (A search resumed from a torn journal end to end: test_search.py.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import tiny_spec
from typer.testing import CliRunner

from augworth.orchestrator.cli import app
from augworth.orchestrator.plan import plan_sweep
from augworth.orchestrator.storage import open_storage, repair_journal
from augworth.results import Store
from augworth.search_spaces import SpecError


def journal_with_trials(path: Path, n: int = 3) -> None:
    import optuna

    study = optuna.create_study(study_name="s", storage=open_storage(str(path)), direction="maximize")
    for i in range(n):
        study.tell(study.ask(), float(i))


def test_a_torn_last_line_is_cut_so_the_next_append_does_not_break_every_later_read(tmp_path):
    import optuna
    from optuna.storages.journal import JournalFileBackend

    journal = tmp_path / "optuna.log"
    journal_with_trials(journal)
    whole = journal.read_bytes()
    torn = whole[:-7]  # a crash mid-append: the last event's line lost its end
    # as it was: Optuna reads past the torn tail, appends after it, and from then on cannot read the journal
    journal.write_bytes(torn)
    study = optuna.load_study(study_name="s", storage=optuna.storages.JournalStorage(JournalFileBackend(str(journal))))
    with pytest.raises((ValueError, AttributeError)):  # its own new trial is lost in the torn line, or a read fails
        study.tell(study.ask(), 9.0)
        optuna.load_study(study_name="s", storage=optuna.storages.JournalStorage(
            JournalFileBackend(str(journal)))).get_trials()
    # repaired on open: what precedes the last newline is kept, appends and reads go on
    journal.write_bytes(torn)
    study = optuna.load_study(study_name="s", storage=open_storage(str(journal), own=True))
    assert journal.read_bytes() == whole[: whole[:-7].rfind(b"\n") + 1]
    study.tell(study.ask(), 9.0)
    again = optuna.load_study(study_name="s", storage=open_storage(str(journal)))
    assert [t.value for t in again.get_trials() if t.value is not None][-1] == 9.0
    assert repair_journal(str(journal)) == 0  # a whole journal is left as it is


def test_only_the_sweeps_own_journal_has_a_left_lock_removed(tmp_path):
    # a journal named in search.storage may be shared: its lock may be another driver's, mid-append
    for own in (False, True):
        journal = tmp_path / f"{own}.log"
        journal_with_trials(journal, 1)
        lock = Path(f"{journal}.lock")
        lock.symlink_to(journal)
        open_storage(str(journal), own=own)
        assert lock.is_symlink() != own


SEARCH = tiny_spec("s").replace("{policy: crop, strength: [1]}", "{policy: crop}") + """\
search:
  params: {strength: {low: 1, high: 3}}
  trials: 2
"""


def test_the_storage_is_part_of_the_sweep(tmp_path):
    store = Store(tmp_path / "store")
    store.write_spec("s", plan_sweep(SEARCH, "s.yaml", store).spec.to_yaml())
    moved = SEARCH.replace("trials: 2", f"trials: 2\n  storage: {tmp_path / 'other.log'}")
    for extend in (False, True):
        with pytest.raises(SpecError, match=r"search\.storage: is .*other\.log here and None in the sweep's frozen "
                                            r"spec, where its studies live"):
            plan_sweep(moved, "s.yaml", store, extend=extend)
    assert plan_sweep(SEARCH, "s.yaml", store).frozen == "same"


def invoke(tmp_path, text: str, env: dict[str, str] | None = None):
    (tmp_path / "s.yaml").write_text(text)
    return CliRunner().invoke(app, ["run", str(tmp_path / "s.yaml"), "--store", str(tmp_path / "store")], env=env)


@pytest.mark.parametrize("storage, needle", [
    ("bogus://nowhere", "search.storage: cannot open bogus://nowhere"),
    ("sqlite:////nonexistent-dir/x/optuna.db", "search.storage: cannot open sqlite:////nonexistent-dir"),
    ("{tmp}/spec.txt/optuna.log", "search.storage: cannot write the journal {tmp}/spec.txt/optuna.log: {tmp}/spec.txt "
                                  "is not a folder"),
])
def test_a_storage_that_cannot_be_opened_is_one_line_exit_2_before_anything_is_written(tmp_path, storage, needle):
    (tmp_path / "spec.txt").write_text("a file where the journal's folder would be")
    storage, needle = storage.format(tmp=tmp_path), needle.format(tmp=tmp_path)
    result = invoke(tmp_path, SEARCH.replace("trials: 2", f"trials: 2\n  storage: {storage}"))
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert not (tmp_path / "store").exists()


def test_a_password_is_never_frozen_nor_shown_and_a_variable_stands_for_it(tmp_path):
    written = invoke(tmp_path, SEARCH.replace("trials: 2", "trials: 2\n  storage: postgresql://me:hunter2@db/x"))
    assert written.exit_code == 2 and "search.storage: a password written here" in written.stderr
    assert "hunter2" not in written.stderr + written.stdout and not (tmp_path / "store").exists()
    referenced = SEARCH.replace("trials: 2", "trials: 2\n  storage: sqlite:///${AUGWORTH_TEST_DB}")
    unset = invoke(tmp_path, referenced, env={"AUGWORTH_TEST_DB": None})
    assert unset.exit_code == 2 and "needs the environment variable AUGWORTH_TEST_DB" in unset.stderr
    assert not (tmp_path / "store").exists()
    database = tmp_path / "secret-place" / "optuna.db"
    database.parent.mkdir()
    store = Store(tmp_path / "store")
    os.environ["AUGWORTH_TEST_DB"] = str(database)
    try:
        plan = plan_sweep(referenced, "s.yaml", store)  # the plan opened it: the database exists now
    finally:
        del os.environ["AUGWORTH_TEST_DB"]
    assert database.exists() and "${AUGWORTH_TEST_DB}" in plan.spec.to_yaml()
    assert str(database) not in plan.spec.to_yaml()  # frozen as the reference, never as its value
