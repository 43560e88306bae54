"""The data directory: private to its owner, and who may share it.

With SQLite, one ``fedge serve`` process owns a data directory: its
database is in it, and all round state is decided in that process (the
open round's running sum lives in its memory), so a second process would
silently drop acknowledged updates from aggregates. :class:`DataDirLock`
refuses it with an exclusive ``flock`` on ``<data_dir>/lock``, which the
kernel releases when the process dies, even by SIGKILL, so a crash never
leaves a stale lock.

With PostgreSQL the directory holds only files (updates, checkpoints,
bundles: the blob store), and the processes on one database share it: the
database elects the one that aggregates (:mod:`fedge.server.storage.lease`).
They take the lock *shared*, so any number of them run together, while a
SQLite server is refused on a directory they use, and they on one it owns.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from fedge.server.errors import ConfigurationError

LOCK_FILE = "lock"


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) and make it 0700: updates, tokens and
    the database are readable by the server's user only."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)


class DataDirLock:
    """A non-blocking lock on a data directory: exclusive (SQLite), or
    ``shared`` among the workers of one PostgreSQL database."""

    def __init__(self, data_dir: Path, shared: bool = False) -> None:
        make_private_dir(data_dir)
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(self._fd)
            os.close(self._fd)
            self._fd = None
            if shared:
                raise ConfigurationError(
                    f"the data directory {data_dir} is owned by a fedge server on SQLite"
                    f"{f' (pid {holder})' if holder else ''}; only servers on one "
                    "PostgreSQL database share a data directory: give this one another --data-dir"
                ) from None
            raise ConfigurationError(
                f"the data directory {data_dir} is in use by another fedge server"
                f"{f' (pid {holder})' if holder else ''}; with SQLite one process owns a "
                "data directory: stop it, or give this one another --data-dir"
            ) from None
        if not shared:  # the owner's pid, for the message above (shared: many holders)
            os.ftruncate(self._fd, 0)
            os.write(self._fd, f"{os.getpid()}\n".encode())

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read_holder(fd: int) -> str:
    try:
        return os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        return ""
