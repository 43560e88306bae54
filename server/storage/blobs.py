"""Blob stores: where the bytes of stored updates live, by name.

The database holds each update's row and the name of its file
(``r<round>/<device>-<digest>.safetensors``); the bytes are a blob, written
once, read by the aggregator (its fold, a recovery, a close) and deleted by
retention. :class:`BlobStore` is all the rounds ask of them, so an object
store can stand in for the directory later; :class:`SharedDirBlobs` is a
directory (the data directory's ``updates/``), shared by the workers of one
PostgreSQL database (on one host, or a network file system for several).

Durability is the caller's to ask: :meth:`BlobStore.put` with
``durable=False`` returns once the bytes are written and fsynced under
their name, and :meth:`BlobStore.sync` makes the names of a batch durable
at once (one directory fsync per directory: a group commit's).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from fedge.server.storage.durable import fsync_dir, write_atomically


class BlobStore(Protocol):
    def put(self, name: str, data: bytes, durable: bool = True) -> None:
        """Store ``data`` under ``name`` (all or nothing, never half-written)."""

    def sync(self, names: Iterable[str]) -> None:
        """Make the blobs put with ``durable=False`` survive a crash."""

    def get(self, name: str) -> bytes: ...

    def delete(self, name: str) -> None:
        """Remove it (no error if it is gone already)."""

    def local_path(self, name: str) -> Path:
        """A local file with the blob's bytes, for readers that map it
        (the blocked aggregation reads stored updates a slice at a time)."""


class SharedDirBlobs:
    """Blobs as files under ``root`` (names are relative paths)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, name: str) -> Path:
        path = self.root / name
        if ".." in Path(name).parts or Path(name).is_absolute():
            raise ValueError(f"not a blob name: {name!r}")
        return path

    def put(self, name: str, data: bytes, durable: bool = True) -> None:
        write_atomically(self._path(name), data, sync_dir=durable)

    def sync(self, names: Iterable[str]) -> None:
        for directory in sorted({self._path(n).parent for n in names}):
            fsync_dir(directory)

    def get(self, name: str) -> bytes:
        return self._path(name).read_bytes()

    def delete(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)

    def local_path(self, name: str) -> Path:
        return self._path(name)
