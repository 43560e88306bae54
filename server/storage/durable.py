"""Durable file writes: temp file, fsync, rename, fsync the directory.

After :func:`write_atomically` returns, the file is complete on disk and
survives a kill -9 or a power cut; a crash before that leaves at most a
temp file (named ``.*.tmp``), never a half-written target.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path


def write_atomically(path: Path, data: bytes, sync_dir: bool = True) -> None:
    """``sync_dir=False``: the caller fsyncs ``path.parent`` itself before it
    counts on the file (once for many files: a group commit)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if sync_dir:
        fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_temp_files(directory: Path, older_than_s: float = 0.0) -> int:
    """Delete leftovers of interrupted writes (modified more than
    ``older_than_s`` ago: another process may be writing the newer ones);
    returns how many."""
    removed = 0
    if directory.is_dir():
        cutoff = time.time() - older_than_s
        for leftover in directory.rglob(".*.tmp"):
            try:
                if older_than_s > 0 and leftover.stat().st_mtime > cutoff:
                    continue
            except FileNotFoundError:  # its writer renamed it meanwhile
                continue
            leftover.unlink(missing_ok=True)
            removed += 1
    return removed
