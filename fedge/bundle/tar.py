"""A bundle as one uncompressed tar: what ``fedge push`` uploads and the server unpacks.

Why a tar: a bundle is a directory of files (``manifest.json``, its seal,
the artifacts it lists), and a tar carries a directory in one request body
with no new format, streams in both directions without holding the bundle
in memory, and is read by the standard library. Uncompressed on purpose:
the artifacts are mostly incompressible weights, and a compressed stream
would let a small body unpack to a large bundle.

:func:`pack_bundle` verifies the bundle first and puts in exactly the files
its manifest accounts for. :func:`unpack_bundle` trusts nothing: only
regular files and directories, relative paths without ``..``, empty or
backslashed parts, no file twice, at most ``max_bytes`` of file data and
``MAX_FILES`` files. A refused archive raises :class:`BundleArchiveError`
(:class:`ArchiveTooLarge` for the bounds); what it wrote under ``dest`` is
the caller's to remove.
"""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path
from typing import IO

from fedge.bundle.manifest import MANIFEST_FILE, MANIFEST_HASH_FILE, VerifiedBundle, open_bundle
from fedge.errors import FedgeError

MAX_FILES = 10_000
_FILE_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE)
_CHUNK = 1 << 20


class BundleArchiveError(FedgeError):
    """The upload is not a tar of a bundle that may be unpacked."""


class ArchiveTooLarge(BundleArchiveError):
    """More file data, or more files, than the bounds allow."""


def pack_bundle(bundle_dir: Path, out: IO[bytes]) -> VerifiedBundle:
    """Verify the bundle, then write its manifest, seal and listed files to ``out``."""
    verified = open_bundle(bundle_dir)
    names = [MANIFEST_FILE]
    if verified.sealed:
        names.append(MANIFEST_HASH_FILE)
    names.extend(record["path"] for record in verified.manifest.files())
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name in dict.fromkeys(names):
            info = tar.gettarinfo(bundle_dir / name, arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with open(bundle_dir / name, "rb") as handle:
                tar.addfile(info, handle)
    return verified


def unpack_bundle(stream: IO[bytes], dest: Path, max_bytes: int) -> list[str]:
    """Unpack the tar read from ``stream`` into the existing directory
    ``dest``; returns the files' paths."""
    written: dict[str, None] = {}
    total = 0
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                name = _safe_name(member.name)
                if member.isdir():
                    continue
                if member.type not in _FILE_TYPES:
                    raise BundleArchiveError(
                        f"{name!r} is not a regular file (links and devices are refused)"
                    )
                if name in written:
                    raise BundleArchiveError(f"{name!r} is in the archive twice")
                if member.size < 0:
                    raise BundleArchiveError(f"{name!r} has a negative size")
                total += member.size
                if total > max_bytes or len(written) >= MAX_FILES:
                    raise ArchiveTooLarge(
                        f"a release is at most {max_bytes} bytes in at most {MAX_FILES} files"
                    )
                _write(tar, member, dest, name)
                written[name] = None
    except (tarfile.TarError, EOFError, ValueError) as exc:  # ValueError: bad header text
        raise BundleArchiveError(f"not a readable tar archive: {exc}") from exc
    if not written:
        raise BundleArchiveError("the archive holds no files")
    return list(written)


def _safe_name(raw: str) -> str:
    """The member's path, relative and inside the bundle, or a refusal."""
    parts = raw.split("/")
    while parts and parts[0] == ".":  # "./manifest.json", as `tar -C dir .` writes
        parts.pop(0)
    while parts and parts[-1] == "":  # "keras/" for a directory
        parts.pop()
    bad = not parts or raw.startswith("/") or "\0" in raw
    bad = bad or any(part in ("", ".", "..") or "\\" in part for part in parts)
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        bad = True
    if bad:
        raise BundleArchiveError(f"unsafe path in the archive: {raw[:200]!r}")
    return "/".join(parts)


def _write(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path, name: str) -> None:
    target = dest / name
    for parent in reversed(target.relative_to(dest).parents):
        path = dest / parent
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            raise BundleArchiveError(f"{name!r} lies under a file of the archive")
        path.mkdir(exist_ok=True)
    if target.exists():
        raise BundleArchiveError(f"{name!r} is also a directory of the archive")
    source = tar.extractfile(member)
    if source is None:
        raise BundleArchiveError(f"{name!r} has no data")
    with source, open(target, "xb") as handle:
        shutil.copyfileobj(source, handle, _CHUNK)
        handle.flush()
        os.fsync(handle.fileno())
