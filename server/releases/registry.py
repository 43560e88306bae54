"""The release registry of one server: its stored bundles and how a push lands.

:func:`open_releases` runs at start: it removes uploads a crash left
unfinished and records the bundle the server started from as release 1.
:meth:`Releases.bundle` finds any release's bundle for ``/v1/bundles``,
checked file by file the first time it is asked for in this process (the
server's start checks the initial one), then kept.

:meth:`Releases.push` takes an uploaded tar through every check before it
changes anything: unpacked safely into a staging directory under
``bundles/`` of the data directory (:mod:`fedge.bundle.tar`), every sha256 checked
(:func:`fedge.bundle.manifest.open_bundle`), the same model as the server's, parity
passed (or overridden with a reason), not released already. Only then is
the directory put into the bundle blob store
(:func:`fedge.server.storage.bundles.adopt_bundle`) and the release
recorded, under one lock:
pushes are serialised, and a refused one leaves no file and no row.
:meth:`Releases.adopt_build` takes a bundle a release build wrote
(:mod:`fedge.server.releases.build.builder`) through the same checks and the
same move into place.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

from fedge.bundle.hashing import is_sha256
from fedge.bundle.manifest import ManifestError, VerifiedBundle, open_bundle
from fedge.bundle.tar import ArchiveTooLarge, BundleArchiveError, unpack_bundle
from fedge.server.errors import (
    BadRequest,
    ConfigurationError,
    Conflict,
    PayloadTooLarge,
    ServerError,
    Unprocessable,
)
from fedge.server.releases import actions
from fedge.server.releases.build import actions as build_actions
from fedge.server.releases.checks import model_differences, parity_failures
from fedge.server.storage.blobs import BlobStore
from fedge.server.storage.bundles import (
    StoredBundle,
    adopt_bundle,
    incoming_dir,
    open_stored,
    remove_unfinished,
)
from fedge.server.storage.store import Store, Tx
from fedge.wire.releases import ReleaseRecord
from fedge.wire.weight_spec import ModelSpec

log = logging.getLogger("fedge.server")

# A manifest of the wrong shape fails open_bundle with these (a file record
# that is not an object, a path that is not a string).
_MALFORMED = (ManifestError, KeyError, TypeError, ValueError, AttributeError)


class Releases:
    def __init__(
        self, data_dir: Path, blobs: BlobStore, store: Store, name: str, specs: ModelSpec
    ) -> None:
        """``data_dir``: where uploads are staged; ``blobs``: where bundles are kept."""
        self.data_dir, self.blobs, self.store = data_dir, blobs, store
        self.name, self.specs = name, specs
        self._bundles: dict[str, StoredBundle] = {}
        self._bundles_lock = threading.Lock()
        self._push_lock = threading.Lock()

    def bundle(self, bundle_id: str) -> StoredBundle | None:
        """The stored bundle of a release (None for any other id)."""
        with self._bundles_lock:
            found = self._bundles.get(bundle_id)
        if found is not None or not is_sha256(bundle_id) or bundle_id != bundle_id.lower():
            return found
        with self.store.reading() as tx:
            record = tx.releases.by_bundle(bundle_id)
        if record is None or record.state in ("building", "failed"):
            return None
        try:
            found = open_stored(self.blobs, bundle_id)
        except ConfigurationError as exc:
            log.error("release %s: %s", record.version, exc)
            raise ServerError(
                f"the stored bundle of release {record.version} is damaged", code="bundle_damaged"
            ) from exc
        self.keep(found)
        return found

    def keep(self, bundle: StoredBundle) -> None:
        with self._bundles_lock:
            self._bundles[bundle.bundle_id] = bundle

    def push(self, body: IO[bytes], push: actions.Push, max_bytes: int) -> ReleaseRecord:
        temp = incoming_dir(self.data_dir)
        try:
            _unpack(body, temp, max_bytes)
            verified = _verified(temp)
            failures = self._checked(verified, push.force)
            with self._push_lock:
                return self._add(
                    temp,
                    verified,
                    lambda tx: actions.add_pushed(
                        tx, verified.bundle_id, self.name, push, failures
                    ),
                )
        finally:
            shutil.rmtree(temp, ignore_errors=True)

    def adopt_build(self, built: Path, version: int) -> ReleaseRecord:
        """The bundle a release build wrote at ``built`` (in a directory the
        builder made for it) becomes release ``version``, which is
        ``building``: the checks of a push (without ``force``), then the
        same move into place (see :mod:`fedge.server.releases.build.actions`)."""
        verified = _verified(built)
        self._checked(verified, force=None)
        with self._push_lock:
            return self._add(
                built,
                verified,
                lambda tx: build_actions.finish_building(tx, version, verified.bundle_id),
            )

    def _checked(self, verified: VerifiedBundle, force: str | None) -> list[str]:
        """The parity failures ``force`` overrides; refuses another model,
        and failed parity without ``force``."""
        differences = model_differences(verified.manifest, self.name, self.specs)
        if differences:
            raise Conflict(
                f"the bundle is not the model this server federates: {'; '.join(differences)}",
                code="wrong_model",
            )
        failures = parity_failures(verified.manifest)
        if failures and force is None:
            raise Unprocessable(
                f"the bundle failed its parity checks: {'; '.join(failures)}; push it with "
                "force=<reason> to release it anyway",
                code="parity_failed",
            )
        return failures

    def _add(
        self,
        temp: Path,
        verified: VerifiedBundle,
        record: Callable[[Tx], ReleaseRecord],
    ) -> ReleaseRecord:
        """Move the bundle into place and ``record`` it, in one transaction
        (the bundle is removed again if that fails)."""
        with self.store.reading() as tx:
            existing = tx.releases.by_bundle(verified.bundle_id)
        if existing is not None:
            raise Conflict(
                f"bundle {verified.bundle_id} is already release {existing.version} "
                f"({existing.state})",
                code="already_released",
            )
        stored = adopt_bundle(temp, self.blobs, verified)
        try:
            with self.store.transaction() as tx:
                added = record(tx)
        except BaseException:
            self.blobs.delete_tree(verified.bundle_id)
            raise
        self.keep(stored)
        return added


def open_releases(
    data_dir: Path,
    blobs: BlobStore,
    store: Store,
    name: str,
    specs: ModelSpec,
    initial: StoredBundle | None,
) -> Releases:
    """The registry at start; the bundle the server started from is release 1."""
    remove_unfinished(data_dir)
    releases = Releases(data_dir, blobs, store, name, specs)
    if initial is not None:
        releases.keep(initial)
        with store.transaction() as tx:
            actions.add_initial(tx, initial.bundle_id, name)
    return releases


def _unpack(body: IO[bytes], temp: Path, max_bytes: int) -> None:
    try:
        unpack_bundle(body, temp, max_bytes)
    except ArchiveTooLarge as exc:
        raise PayloadTooLarge(str(exc)) from exc
    except BundleArchiveError as exc:
        raise BadRequest(f"the body is not a bundle archive: {exc}", code="bad_bundle") from exc


def _verified(bundle_dir: Path) -> VerifiedBundle:
    try:
        return open_bundle(bundle_dir)
    except _MALFORMED as exc:
        raise Unprocessable(f"the bundle does not verify: {exc}", code="bundle_invalid") from exc
