"""A device takes the bundle the server federates, checked against its id.

The device is given the bundle id (``bundle_id`` of ``GET
/v1/models/{name}``) and trusts nothing else: ``manifest.json``'s sha256
must be that id, and every file the manifest lists must have the size and
sha256 the manifest gives it before it is written. The files go into a temp
directory beside ``dest``; only once the whole bundle passes
:func:`fedge.bundle.manifest.verify_bundle` with the expected id is it renamed to
``dest``. So ``dest`` holds the published bundle or nothing.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fedge.bundle.hashing import is_sha256, sha256_bytes
from fedge.bundle.manifest import (
    MANIFEST_FILE,
    MANIFEST_HASH_FILE,
    Manifest,
    ManifestError,
    verify_bundle,
)
from fedge.client_sim.device.client import FedgeClient, ProtocolError

# The downloaded bytes were checked; the status of their replies was 200.
_OK = 200
_PARTIAL = 206
CHUNK_BYTES = 1 << 20


def download_bundle(
    client: FedgeClient, bundle_id: str, dest: Path, chunk_bytes: int = CHUNK_BYTES
) -> Path:
    """Download bundle ``bundle_id`` into ``dest`` (a new directory); returns ``dest``.

    A ``dest`` that already holds this bundle (it verifies against the id)
    is returned as it is. Bytes that do not match the id or the manifest
    raise :class:`ProtocolError` naming the file, and leave nothing behind.

    Files come in Range requests of ``chunk_bytes``, each chunk appended to
    a partial copy beside ``dest`` and synced. A download cut off (no
    answer, the process killed) leaves that partial copy; the next call for
    the same bundle and ``dest`` goes on from the bytes it already has, and
    every file is still checked against its sha256 once complete.
    """
    if not is_sha256(bundle_id):
        raise ValueError(f"a bundle id is 64 hex digits (a sha256); got {bundle_id!r}")
    bundle_id = bundle_id.lower()
    if dest.exists():
        return _already_there(dest, bundle_id)
    base = f"/v1/bundles/{bundle_id}/"
    manifest_bytes = client.get(base + MANIFEST_FILE)
    if sha256_bytes(manifest_bytes) != bundle_id:
        raise ProtocolError(
            _OK,
            "bundle_mismatch",
            f"{MANIFEST_FILE} of bundle {bundle_id[:12]} does not match the bundle id",
        )
    manifest = _parse(manifest_bytes, bundle_id)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # One partial copy per destination and bundle: what a later call resumes.
    temp = dest.parent / f".{dest.name}.{bundle_id[:16]}.partial"
    temp.mkdir(exist_ok=True)
    try:
        _write(temp, MANIFEST_FILE, manifest_bytes)
        seal = _optional(client, base + MANIFEST_HASH_FILE)
        if seal is not None:
            _write(temp, MANIFEST_HASH_FILE, seal)
        for record in manifest.files():
            name = _relative(record.get("path"), bundle_id)
            _fetch(client, base + quote(name), temp / name, record, chunk_bytes)
            _check(name, (temp / name).read_bytes(), record)
        try:
            verify_bundle(temp, expected_id=bundle_id)
        except ManifestError as exc:
            raise ProtocolError(
                _OK, "bundle_invalid", f"bundle {bundle_id[:12]} does not verify: {exc}"
            ) from exc
        temp.rename(dest)
    except ProtocolError:
        # Bytes that are not the bundle's are not kept for a resume.
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return dest


def _fetch(
    client: FedgeClient, path: str, target: Path, record: dict[str, Any], chunk: int
) -> None:
    """Append the missing bytes of one file to ``target``, chunk by chunk."""
    size = int(record.get("bytes") or 0)
    target.parent.mkdir(parents=True, exist_ok=True)
    have = target.stat().st_size if target.exists() else 0
    if have > size:
        target.unlink()
        have = 0
    with open(target, "ab") as handle:
        while have < size:
            reply = client.get_range(path, have, min(have + chunk, size) - 1)
            body = reply.body
            if reply.status == _OK:  # the whole file: the server ignored Range
                handle.truncate(0)
                have = 0
            elif reply.status != _PARTIAL or not body:
                raise ProtocolError(
                    reply.status, "bad_range", f"{path}: no bytes from {have} in the reply"
                )
            handle.write(body[: size - have])
            handle.flush()
            os.fsync(handle.fileno())
            have += len(body[: size - have])


def _already_there(dest: Path, bundle_id: str) -> Path:
    try:
        verify_bundle(dest, expected_id=bundle_id)
    except ManifestError as exc:
        raise FileExistsError(
            f"{dest} exists and is not bundle {bundle_id[:12]} ({exc}); remove it first"
        ) from exc
    return dest


def _parse(data: bytes, bundle_id: str) -> Manifest:
    try:
        raw = json.loads(data.decode("utf-8"))
        if not isinstance(raw, dict):
            raise ManifestError("the manifest is not a JSON object")
        return Manifest.from_json(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, ManifestError) as exc:
        raise ProtocolError(
            _OK, "bad_manifest", f"{MANIFEST_FILE} of bundle {bundle_id[:12]}: {exc}"
        ) from exc


def _optional(client: FedgeClient, path: str) -> bytes | None:
    """``manifest.sha256``: bundles made before it existed do not have it."""
    try:
        return client.get(path)
    except ProtocolError as exc:
        if exc.status == 404 and exc.code == "unknown_file":
            return None
        raise


def _relative(path: Any, bundle_id: str) -> str:
    """A path the manifest lists, refused unless it stays inside the bundle."""
    parts = path.split("/") if isinstance(path, str) else []
    if not parts or any(part in ("", ".", "..") or "\\" in part for part in parts):
        raise ProtocolError(
            _OK,
            "bad_manifest",
            f"{MANIFEST_FILE} of bundle {bundle_id[:12]} lists a path outside it: {path!r}",
        )
    return "/".join(parts)


def _check(name: str, data: bytes, record: dict[str, Any]) -> None:
    if len(data) != record.get("bytes") or sha256_bytes(data) != record.get("sha256"):
        raise ProtocolError(
            _OK,
            "bundle_file_mismatch",
            f"{name}: {len(data)} bytes with sha256 {sha256_bytes(data)[:12]}, not the "
            f"{record.get('bytes')} bytes and sha256 {str(record.get('sha256'))[:12]} "
            "of the manifest",
        )


def _write(root: Path, name: str, data: bytes) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
