"""The file layer under the store, the lock and checkpoints: a root that is a local path or a pyarrow
filesystem URI, and writes that a reader never sees half done.

Imports neither Ray nor torch nor DuckDB, and pyarrow only when a `Root` is made: the training command
line imports checkpoints through here and must run where only torch is installed.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from augworth.search_spaces.secrets import redact

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs

# fsync each atomic write's file, then its folder, on local file systems: a rename alone survives a crash of
# the process, not a power loss. (bench/store.py measures what it costs per cell, with it off for comparison.)
FSYNC = True
SWEEP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class StoreError(ValueError):
    """Bad store input (a sweep name or root); the CLI turns it into exit code 2."""


def check_sweep_name(name: str) -> str:
    # The pattern rules out '/', '..' and absolute names, so a sweep can never escape its root.
    if not SWEEP_NAME.match(name) or name in {".", ".."}:
        raise StoreError(f"bad sweep name {name!r}: must match {SWEEP_NAME.pattern}")
    return name


class Root:
    """A folder on a file system: `path` is '/'-separated (absolute where local), `uri` as the user gave it
    (`shown`: the same with its secrets redacted, for messages). A `file://` URI is a local folder: its writes
    rename and fsync, and the sweep lock is an OS lock, as for a plain path."""

    def __init__(self, root: str | Path) -> None:
        import pyarrow.fs as pafs

        self._pafs = pafs
        root = str(root)
        if "://" in root:
            self.fs, base = pafs.FileSystem.from_uri(root)
        else:
            self.fs, base = pafs.LocalFileSystem(), root
        self.local = isinstance(self.fs, pafs.LocalFileSystem)
        if self.local:
            base = str(Path(base).expanduser().resolve())
        self.path = base.rstrip("/")
        self.uri = root
        self.shown = redact(root)

    def location(self, *parts: str) -> str:
        """Where `parts` (below this root) are, as another process opens them with `Root(...)`: a local path, or
        this root's URI with the parts added to its path (its query, such as an S3 endpoint, kept)."""
        if self.local:
            return "/".join([self.path, *parts])
        head, sep, query = self.uri.partition("?")
        return "/".join([head.rstrip("/"), *parts]) + sep + query

    def exists(self, path: str) -> bool:
        return bool(self.fs.get_file_info(path).type != self._pafs.FileType.NotFound)

    def infos(self, folder: str) -> list[pafs.FileInfo]:
        """What `folder` holds (not recursive); nothing if it does not exist."""
        if not self.exists(folder):
            return []
        return list(self.fs.get_file_info(self._pafs.FileSelector(folder, recursive=False)))

    def list(self, folder: str, suffix: str) -> list[str]:
        """Paths of the files in `folder` whose names end in `suffix`, sorted."""
        return sorted(i.path for i in self.infos(folder) if i.type == self._pafs.FileType.File
                      and i.base_name.endswith(suffix))

    def read_bytes(self, path: str) -> bytes:
        """Raises FileNotFoundError where there is no such file."""
        with self.fs.open_input_stream(path) as f:
            return bytes(f.read())

    def delete(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):  # deleting twice is fine: cleanup may run again
            self.fs.delete_file(path)

    def move(self, source: str, target: str) -> None:
        self.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        self.fs.move(source, target)

    def write_atomic(self, path: str, data: bytes | pa.Buffer) -> None:
        """Write through a temp name that does not end like the target, then rename (one put on an object
        store, which is atomic there): a reader sees the old file or the new one, never part of one. Locally
        the file and then its folder are fsynced (FSYNC), so that holds after a power loss too."""
        folder, name = path.rsplit("/", 1)
        self.fs.create_dir(folder, recursive=True)
        if not self.local:
            with self.fs.open_output_stream(path) as out:
                out.write(data)
            return
        tmp = f"{folder}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
        with open(tmp, "wb") as out:
            out.write(memoryview(data))
            if FSYNC:  # the bytes reach the disk before the name does: a power loss leaves old or new, not a hole
                out.flush()
                os.fsync(out.fileno())
        os.replace(tmp, path)  # rename(2): atomic on one file system
        if FSYNC:  # and the rename itself, which lives in the folder
            folder_fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(folder_fd)
            finally:
                os.close(folder_fd)

    def inside(self, path: str) -> bool:
        """Whether a local `path` stays under the root once links are followed (remote paths always do)."""
        if not self.local:
            return True
        return not os.path.islink(path) and (not os.path.exists(path) or os.path.realpath(path).startswith(
            os.path.realpath(self.path) + os.sep))
