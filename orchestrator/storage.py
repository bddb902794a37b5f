"""Where a sweep's search keeps its studies (Optuna storage), checked before anything is written and opened safely.

- `storage_url`: the spec's `search.storage` with its `${VAR}` references filled from the environment (a password
  is never written into a spec: search_spaces/secrets.py), else the sweep's own journal `<sweep>/optuna.log`.
- `check_storage`, in the plan: the variables are set, a database URL opens (its driver imports, its server
  answers), a journal's folder can be written. Bad input is exit 2 before any file of the sweep is written.
- `open_storage`: a journal file or a database. The sweep's own journal is opened under the sweep's lock, where
  no other driver can write it, so what a killed driver left is put right first: Optuna's `<journal>.lock`
  (Optuna would wait out its 30 s grace period) and a torn last line (`repair_journal`). A journal named in
  `search.storage` may be shared by several sweeps: its tail is repaired under Optuna's own lock, and its lock
  file is left to Optuna, which alone can tell whether another driver is appending.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

from augworth.results import Store, StoreError
from augworth.search_spaces import Spec, spec_error
from augworth.search_spaces.secrets import expand_env, redact

STORAGE_NAME = "optuna.log"
log = logging.getLogger("augworth")


def storage_url(spec: Spec, store: Store) -> str:
    """Where the sweep's studies live: the spec's `search.storage`, else a journal file in the sweep's folder."""
    return sweep_storage_url(store, spec.name, spec.search.storage if spec.search is not None else None)


def sweep_storage_url(store: Store, sweep: str, configured: str | None) -> str:
    if configured:
        try:
            return expand_env(configured)
        except KeyError as exc:
            raise StoreError(f"search.storage {configured!r} needs the environment variable {exc.args[0]}") from None
    if not store.local:
        raise StoreError(f"a search on a store at a URI ({store.shown}) needs search.storage: a journal file path "
                         "or a database URL that the driver reaches")
    return own_journal(store, sweep)


def own_journal(store: Store, sweep: str) -> str:
    return store.location(sweep, STORAGE_NAME)


def check_storage(spec: Spec, store: Store, text: str | None, source: str) -> None:
    """The search's storage, usable before anything is written; else a SpecError at `search.storage`."""
    if spec.search is None:
        return
    loc = ("search", "storage") if spec.search.storage else ("search",)
    try:
        url = storage_url(spec, store)
    except StoreError as exc:
        raise spec_error(str(exc), text=text, source=source, loc=loc) from None
    if "://" in url:
        try:
            open_storage(url)  # connects, and creates Optuna's tables where they are missing
        except Exception as exc:  # an unknown scheme, a missing driver, a server that does not answer: the URL's
            first = (str(exc).splitlines() or [exc.__class__.__name__])[0]
            raise spec_error(f"cannot open {redact(url)}: {redact(first)}", text=text, source=source,
                             loc=loc) from None
        return
    folder = Path(url).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise spec_error(f"cannot write the journal {url}: {folder} is not a folder this driver can write",
                         text=text, source=source, loc=loc)


def open_storage(url: str, *, own: bool = False) -> Any:  # -> optuna.storages.BaseStorage
    """A journal file (a path) or an RDB storage (a URL with '://'). `own`: the sweep's own journal, opened by the
    driver that holds the sweep's lock (see the module's docstring)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if "://" in url:
        return optuna.storages.RDBStorage(url)
    from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
    from optuna.storages.journal._file import get_lock_file

    Path(url).parent.mkdir(parents=True, exist_ok=True)
    if own:
        Path(url + ".lock").unlink(missing_ok=True)  # no other writer can hold it: a killed driver left it
    if torn(url):
        with contextlib.nullcontext() if own else get_lock_file(JournalFileSymlinkLock(url)):
            cut = repair_journal(url)  # looked at again under the lock: an append may have completed the line
        if cut:
            log.warning("the search journal %s ended in a torn line (%d bytes, a crash mid-write): cut off; the "
                        "trial it belonged to is settled against the store", url, cut)
    return optuna.storages.JournalStorage(JournalFileBackend(url))


def torn(path: str) -> bool:
    """Whether the journal ends in something other than a whole line."""
    try:
        with open(path, "rb") as f:
            if f.seek(0, os.SEEK_END) == 0:
                return False
            f.seek(-1, os.SEEK_END)
            return f.read(1) != b"\n"
    except FileNotFoundError:
        return False


def repair_journal(path: str) -> int:
    """Cut what follows the journal's last newline; returns the bytes cut. Such a tail is a line torn by a crash,
    a full disk or NFS: Optuna's reader skips it, but its next append would land after it, make one
    undecodable line of the two, and every later read would fail."""
    with open(path, "rb+") as f:
        end = pos = f.seek(0, os.SEEK_END)
        keep = 0
        while pos > 0:
            step = min(1 << 16, pos)
            f.seek(pos - step)
            newline = f.read(step).rfind(b"\n")
            if newline >= 0:
                keep = pos - step + newline + 1
                break
            pos -= step
        if keep < end:
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
    return end - keep
