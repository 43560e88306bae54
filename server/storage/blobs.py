"""Blob stores: where the bytes the database points at live, by name.

The database holds rows and the names of files; the bytes are blobs,
written once (a name never gets other bytes, except a damaged copy being
replaced), read by any worker and deleted by retention. Four kinds, one
store each, built in one place (:meth:`BlobStores.under`, from the data
directory) and carried in the server's context:

=============  ==========================================  ====================
kind           names                                       written by
=============  ==========================================  ====================
updates        ``r<round>/`` segments (older data:         the worker that
               ``r<round>/<device>-<digest>.safetensors``)  takes the upload
checkpoints    ``<sha256>.safetensors`` (content-addressed) the aggregator
strategy       ``<checkpoint id>.safetensors`` (optimizer   the aggregator
               slots saved beside a checkpoint)
bundles        ``<bundle id>/<path in the manifest>``       the start from a
               (one tree per verified bundle)               bundle, a push, a
                                                            release build
=============  ==========================================  ====================

:class:`BlobStore` is all the server asks of them, so an object store can
stand in for the directories later by implementing it; :class:`SharedDirBlobs`
is a directory (``updates/``, ``checkpoints/``, ``strategy/`` and
``bundles/`` of the data directory: the paths of earlier releases),
shared by the workers of one PostgreSQL database (on one host, or a
network file system for several).

Durability is the caller's to ask: :meth:`BlobStore.put` with
``durable=False`` returns once the bytes are written and fsynced under
their name, and :meth:`BlobStore.sync` makes the names of a batch durable
at once (one directory fsync per directory: a group commit's). Every other
write is durable when it returns, so a row recorded after it never points
at bytes a crash could lose.

A name is a relative path of ``/``-separated parts: empty names, absolute
ones and ``..`` parts are refused with :class:`BlobNameError` before
anything is touched.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from fedge.server.storage.durable import fsync_dir, remove_temp_files, write_atomically

# Entries whose name starts with this are unfinished writes (temp files,
# trees on their way into place), never blobs.
TEMP_PREFIX = "."


class BlobNameError(ValueError):
    """A name that is not a blob's: empty, absolute, or with a ``..`` part."""


class BlobStore(Protocol):
    def put(self, name: str, data: bytes, durable: bool = True) -> None:
        """Store ``data`` under ``name`` (all or nothing, never half-written)."""

    def sync(self, names: Iterable[str]) -> None:
        """Make the blobs put with ``durable=False`` survive a crash."""

    def get(self, name: str) -> bytes:
        """The blob's bytes (:class:`FileNotFoundError` if there is none)."""

    def exists(self, name: str) -> bool:
        """Whether a blob (or a tree, see :meth:`put_tree`) has this name:
        a content-addressed writer skips a put of bytes already stored."""

    def delete(self, name: str) -> None:
        """Remove it (no error if it is gone already)."""

    def put_tree(self, prefix: str, source: Path) -> None:
        """Store every file under the local directory ``source`` as
        ``<prefix>/<its relative path>``, replacing what ``prefix`` held,
        all or nothing and durable on return. For what converters and
        uploads write as a directory (a bundle); ``source`` is consumed
        (moved when it can be; the caller removes what is left)."""

    def delete_tree(self, prefix: str) -> None:
        """Remove every blob under ``prefix`` (no error if there is none)."""

    def local_path(self, name: str) -> Path:
        """A local file with the blob's bytes (a directory, for a tree),
        for readers that need one: the blocked aggregation maps stored
        updates a slice at a time, downloads stream files with Range, and
        the predict runtimes and release builds open bundle files. An
        object store would keep a local copy here. ``""`` is the local
        root: the updates' segment writer appends to files in it."""

    def remove_unfinished(self, older_than_s: float = 0.0) -> int:
        """Delete what writes a crash cut short left (older than
        ``older_than_s``: other workers may be writing the newer ones);
        returns how many."""


class SharedDirBlobs:
    """Blobs as files under ``root`` (names are relative paths)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, name: str) -> Path:
        if not name or PurePosixPath(name).is_absolute() or ".." in PurePosixPath(name).parts:
            raise BlobNameError(
                f"not a blob name: {name!r} (a relative path without '..' parts is)"
            )
        return self.root / name

    def put(self, name: str, data: bytes, durable: bool = True) -> None:
        write_atomically(self._path(name), data, sync_dir=durable)

    def sync(self, names: Iterable[str]) -> None:
        for directory in sorted({self._path(n).parent for n in names}):
            fsync_dir(directory)

    def get(self, name: str) -> bytes:
        return self._path(name).read_bytes()

    def exists(self, name: str) -> bool:
        return self._path(name).exists()

    def delete(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)

    def put_tree(self, prefix: str, source: Path) -> None:
        """The tree is fsynced, then renamed to its name (a copy is made
        beside it first when ``source`` is on another file system), so the
        name holds the whole tree or what it held before."""
        target = self._path(prefix)
        target.parent.mkdir(parents=True, exist_ok=True)
        _fsync_tree(source)
        try:
            _replace_dir(source, target)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            copy = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}copy-", dir=target.parent))
            try:
                shutil.copytree(source, copy, dirs_exist_ok=True)
                _fsync_tree(copy)
                _replace_dir(copy, target)
            finally:
                shutil.rmtree(copy, ignore_errors=True)

    def delete_tree(self, prefix: str) -> None:
        target = self._path(prefix)
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target, ignore_errors=True)
            fsync_dir(target.parent)

    def local_path(self, name: str) -> Path:
        """``""`` is the root itself (where the update segments are written)."""
        return self.root if name == "" else self._path(name)

    def remove_unfinished(self, older_than_s: float = 0.0) -> int:
        """Temp files of interrupted puts (``.*.tmp``) and trees a crash
        left on their way into place (``.*`` entries of the root)."""
        removed = remove_temp_files(self.root, older_than_s)
        if not self.root.is_dir():
            return removed
        cutoff = time.time() - older_than_s
        for entry in self.root.iterdir():
            if not entry.name.startswith(TEMP_PREFIX) or not entry.is_dir():
                continue
            try:
                if older_than_s > 0 and entry.stat().st_mtime > cutoff:
                    continue
            except FileNotFoundError:  # its writer renamed it meanwhile
                continue
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
        return removed


@dataclass(frozen=True)
class BlobStores:
    """The server's blob stores, one per kind (see the table above)."""

    updates: BlobStore
    checkpoints: BlobStore
    strategy: BlobStore
    bundles: BlobStore

    @classmethod
    def under(cls, data_dir: Path) -> BlobStores:
        """Directories of the data directory, where earlier releases kept
        these files: an existing data directory keeps working."""
        return cls(
            updates=SharedDirBlobs(data_dir / "updates"),
            checkpoints=SharedDirBlobs(data_dir / "checkpoints"),
            strategy=SharedDirBlobs(data_dir / "strategy"),
            bundles=SharedDirBlobs(data_dir / "bundles"),
        )

    def all(self) -> tuple[BlobStore, ...]:
        return (self.updates, self.checkpoints, self.strategy, self.bundles)


def _fsync_tree(root: Path) -> None:
    """Every file, then every directory, deepest first."""
    directories = [root]
    for path in root.rglob("*"):
        if path.is_dir() and not path.is_symlink():
            directories.append(path)
        elif path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    for directory in sorted(directories, key=lambda p: len(p.parts), reverse=True):
        fsync_dir(directory)


def _replace_dir(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target``, putting a stale one aside first."""
    stale = None
    if target.exists():
        stale = target.with_name(f"{TEMP_PREFIX}stale-{target.name}")
        shutil.rmtree(stale, ignore_errors=True)
        target.rename(stale)
    try:
        source.rename(target)
    except BaseException:
        if stale is not None:
            stale.rename(target)  # what it held before
        raise
    fsync_dir(target.parent)
    if stale is not None:
        shutil.rmtree(stale, ignore_errors=True)
