"""The bundles a server serves, kept in its bundle blob store and served from there.

A server started from a bundle directory stores the bundle in the bundle
blob store (:mod:`fedge.server.storage.blobs`: ``<bundle id>/<path>``;
``<data_dir>/bundles/<bundle id>/`` with the shared directory) at its first
start: the files the manifest lists, ``manifest.json`` and
``manifest.sha256``, nothing else. The copy is made in a staging directory
of the data directory, checked with :func:`fedge.bundle.manifest.open_bundle`
against the bundle id, then put as one tree
(:meth:`~fedge.server.storage.blobs.BlobStore.put_tree`: all or nothing,
durable before the model's row names it). The bundle id goes into the
model's record in the database; every restart checks the stored copy again
before anything else happens, so devices are never served files that
differ from the manifest the server federates (a device checks them again
anyway, against the id it was given).

Releases pushed later (:mod:`fedge.server.api.releases`) and built from
checkpoints (:mod:`fedge.server.releases.build`) are kept the same way:
unpacked or written into a staging directory, verified, then put by
:func:`adopt_bundle`; any of them is served by ``GET /v1/bundles/<id>/<path>``.
Staging is a real directory because the archive reader and the converters
write files, and the checks read them; it is ``bundles/.incoming-*`` of the
data directory, so that with the shared directory the put is one rename.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fedge.bundle.files import BundleFile
from fedge.bundle.hashing import is_sha256, sha256_file
from fedge.bundle.manifest import (
    MANIFEST_FILE,
    MANIFEST_HASH_FILE,
    ManifestError,
    VerifiedBundle,
    open_bundle,
)
from fedge.server.errors import ConfigurationError
from fedge.server.storage.blobs import BlobStore
from fedge.server.storage.data_dir import make_private_dir
from fedge.server.storage.durable import fsync_dir

BUNDLES_DIR = "bundles"
# Entries of the staging directory, bundles/, whose name starts with this
# are unfinished copies.
_TEMP_PREFIX = "."
_CHUNK = 1 << 20


@dataclass(frozen=True)
class StoredBundle:
    """A verified stored bundle; ``files`` is everything it serves, by path
    (``manifest.json``'s sha256 is the bundle id); ``root``: its local copy
    (:meth:`~fedge.server.storage.blobs.BlobStore.local_path`)."""

    bundle_id: str
    root: Path
    files: Mapping[str, BundleFile]


def is_bundle_dir(model: Path) -> bool:
    """Whether ``--model`` names a bundle directory (as
    :mod:`fedge.server.rounds.initial_model` decides it)."""
    return model.is_dir() and (model / MANIFEST_FILE).is_file()


def store_bundle(source: Path, data_dir: Path, blobs: BlobStore) -> StoredBundle:
    """Put the bundle at ``source`` into ``blobs`` (once), staged in ``data_dir``.

    A copy already there that verifies is kept as it is; one that does not
    (nothing refers to it before the model is recorded) is replaced.
    """
    try:
        verified = open_bundle(source)
    except ManifestError as exc:
        raise ConfigurationError(f"cannot use bundle {source}: {exc}") from exc
    root = data_dir / BUNDLES_DIR
    make_private_dir(root)
    _remove_unfinished(root)
    if blobs.exists(verified.bundle_id):
        target = blobs.local_path(verified.bundle_id)
        try:
            return _stored(target, open_bundle(target, expected_id=verified.bundle_id))
        except ManifestError:
            pass  # replaced below
    temp = Path(tempfile.mkdtemp(prefix=f"{_TEMP_PREFIX}incoming-", dir=root))
    try:
        try:
            _copy(source, temp, verified)
        except OSError as exc:  # a file gone since it was checked, a full disk
            raise ConfigurationError(f"cannot copy bundle {source} into {root}: {exc}") from exc
        try:
            copied = open_bundle(temp, expected_id=verified.bundle_id)
        except ManifestError as exc:
            raise ConfigurationError(
                f"bundle {source} changed while it was copied into {root}: {exc}"
            ) from exc
        blobs.put_tree(verified.bundle_id, temp)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return _stored(blobs.local_path(verified.bundle_id), copied)


def incoming_dir(data_dir: Path) -> Path:
    """A new, empty staging directory under ``bundles/`` to unpack an
    upload into (removed at the next start if it is left behind)."""
    root = data_dir / BUNDLES_DIR
    make_private_dir(root)
    return Path(tempfile.mkdtemp(prefix=f"{_TEMP_PREFIX}incoming-", dir=root))


def adopt_bundle(temp: Path, blobs: BlobStore, verified: VerifiedBundle) -> StoredBundle:
    """Keep the bundle verified in ``temp`` (from :func:`incoming_dir`, or
    a build's directory) as ``<bundle id>/`` of ``blobs``: files the
    manifest does not account for are removed, then the tree is put."""
    keep = {record["path"] for record in verified.manifest.files()}
    keep |= {MANIFEST_FILE, MANIFEST_HASH_FILE}
    for path in sorted(temp.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        name = path.relative_to(temp).as_posix()
        if path.is_dir() and not path.is_symlink():
            if not any(path.iterdir()):
                path.rmdir()
        elif name not in keep:
            path.unlink()
    blobs.put_tree(verified.bundle_id, temp)
    return _stored(blobs.local_path(verified.bundle_id), verified)


def remove_unfinished(data_dir: Path) -> None:
    """Remove unpacked uploads and copies that a crash left in the staging
    directory (and, with the shared directory, trees on their way into place)."""
    root = data_dir / BUNDLES_DIR
    if root.is_dir():
        _remove_unfinished(root)


def open_stored(blobs: BlobStore, bundle_id: str) -> StoredBundle:
    """The bundle the database recorded, checked file by file again."""
    if not is_sha256(bundle_id):
        raise ConfigurationError(
            f"the database records the bundle id {bundle_id!r}, which is not a sha256"
        )
    target = blobs.local_path(bundle_id)
    try:
        verified = open_bundle(target, expected_id=bundle_id)
    except ManifestError as exc:
        raise ConfigurationError(
            f"the stored bundle {target} is damaged: {exc}; restore it from the "
            "original bundle (the same bundle id) or use another --data-dir"
        ) from exc
    return _stored(target, verified)


def _stored(root: Path, verified: VerifiedBundle) -> StoredBundle:
    files = {record["path"]: BundleFile.from_record(record) for record in verified.manifest.files()}
    manifest = root / MANIFEST_FILE
    files[MANIFEST_FILE] = BundleFile(MANIFEST_FILE, verified.bundle_id, manifest.stat().st_size)
    if verified.sealed:
        seal = root / MANIFEST_HASH_FILE
        files[MANIFEST_HASH_FILE] = BundleFile(
            MANIFEST_HASH_FILE, sha256_file(seal), seal.stat().st_size
        )
    return StoredBundle(verified.bundle_id, root, files)


def _copy(source: Path, temp: Path, verified: VerifiedBundle) -> None:
    """Copy what the manifest accounts for, each file fsynced, then every
    directory it made."""
    names = [record["path"] for record in verified.manifest.files()]
    names.append(MANIFEST_FILE)
    if verified.sealed:
        names.append(MANIFEST_HASH_FILE)
    directories = {temp}
    for name in dict.fromkeys(names):
        target = temp / name
        target.parent.mkdir(parents=True, exist_ok=True)
        directories.update(p for p in target.parents if temp in p.parents)
        with open(source / name, "rb") as src, open(target, "xb") as dst:
            shutil.copyfileobj(src, dst, _CHUNK)
            dst.flush()
            os.fsync(dst.fileno())
    for directory in sorted(directories, key=lambda p: len(p.parts), reverse=True):
        fsync_dir(directory)


def _remove_unfinished(root: Path) -> None:
    """Remove copies a start that was cut short left behind."""
    for entry in root.iterdir():
        if entry.name.startswith(_TEMP_PREFIX):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
