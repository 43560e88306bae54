"""Update segments: the updates of one group commit appended to one file
with one write and one ``fdatasync``, instead of a file and an fsync each.

A segment is a sequence of batches, each of records (a frame header:
``MAGIC``, the payload's length, the payload's sha256; then the payload,
the update as stored) and zeros up to the next ``BLOCK`` boundary: batches
are written with ``O_DIRECT`` where the file system has it, from one
reused aligned buffer, which spares the kernel a copy into the page cache
(most of the ingest's CPU time per update, measured with perf).

Its rows (``updates.segment``, ``updates.segment_offset`` and
``updates.bytes``) are committed only after the ``fdatasync``, so a row
always points at a complete record. A crash during a write leaves a torn
tail after the last committed record; nothing points into it, a process
never appends to a segment an earlier process wrote (each start opens a new
one), and :func:`scan` stops at the first frame that does not check out.
Reads check the frame: a record that is torn or altered is an error, never
an update.

Segments live beside the one-file-per-update layout of older data
directories (``r<round>/<device>-<digest>.safetensors``, rows with an empty
``segment``), one segment per round at a time
(``r<round>/s<ns>-<pid>.seg``), so retention deletes a round's segments
once it deletes the round's files.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import mmap
import os
import struct
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fedge.server.storage.blobs import BlobStore
from fedge.server.storage.durable import fsync_dir
from fedge.server.storage.rounds import UpdateRecord
from fedge.wire.file_span import FileSpan

MAGIC = b"fedgeseg"
FRAME = struct.Struct("<8sQ32s")  # magic, payload length, sha256 of the payload
SUFFIX = ".seg"
# A segment past this size is closed and the next batch starts a new one.
SEGMENT_LIMIT = 256 * 2**20
BLOCK = 4096  # batches start at multiples of it (O_DIRECT's alignment)
# Held between batches up to this size (a larger batch's buffer is not kept).
KEPT_BUFFER = 64 * 2**20


class TornRecord(Exception):
    """A segment record that is cut short or does not match its frame."""


@dataclass(frozen=True)
class SegmentRecord:
    """Where an appended payload's frame starts (its row's location)."""

    segment: str  # under the updates directory
    offset: int
    length: int


def frame_header(payload: bytes, sha256: bytes | None = None) -> bytes:
    """The frame of ``payload``; ``sha256``: its digest when the caller
    has it already (hashing 1 MB takes a millisecond: in the request's
    thread, not the committing one)."""
    digest = hashlib.sha256(payload).digest() if sha256 is None else sha256
    return FRAME.pack(MAGIC, len(payload), digest)


class SegmentWriter:
    """Appends batches to the current segment of a round; one caller at a time."""

    def __init__(self, updates_dir: Path, limit: int = SEGMENT_LIMIT) -> None:
        self._dir = updates_dir
        self._limit = limit
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._direct = False
        self._buffer: mmap.mmap | None = None
        self._name = ""
        self._round = -1
        self._size = 0

    def append(self, round_id: int, framed: Sequence[tuple[bytes, bytes]]) -> list[SegmentRecord]:
        """Append ``(frame_header, payload)`` pairs to the round's segment;
        returns when they are on disk."""
        with self._lock:
            if self._fd is None or self._round != round_id or self._size >= self._limit:
                self._start(round_id)
            assert self._fd is not None
            records = []
            offset = self._size
            for header, payload in framed:
                records.append(SegmentRecord(self._name, offset, len(payload)))
                offset += len(header) + len(payload)
            end = _aligned(offset)
            try:
                self._write([part for pair in framed for part in pair], end - self._size)
                os.fdatasync(self._fd)
            except BaseException:
                # Maybe a partial tail: never append after it.
                self.close()
                raise
            self._size = end
            return records

    def _write(self, parts: list[bytes], length: int) -> None:
        """``parts`` then zeros, ``length`` bytes in all, at the end."""
        assert self._fd is not None
        padding = length - sum(len(p) for p in parts)
        if self._direct:
            try:
                self._write_direct(parts, length)
                return
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
            # The file system took the flag but not the write: go buffered.
            self._direct = False
            flags = fcntl.fcntl(self._fd, fcntl.F_GETFL)
            fcntl.fcntl(self._fd, fcntl.F_SETFL, flags & ~getattr(os, "O_DIRECT", 0))
        os.lseek(self._fd, self._size, os.SEEK_SET)
        _write_all(self._fd, [*parts, bytes(padding)])

    def _write_direct(self, parts: list[bytes], length: int) -> None:
        assert self._fd is not None
        padding = length - sum(len(p) for p in parts)
        if self._buffer is None or len(self._buffer) < length:
            self._buffer = mmap.mmap(-1, length)
        buffer, position = self._buffer, 0
        for part in parts:
            buffer[position : position + len(part)] = part
            position += len(part)
        buffer[position:length] = bytes(padding)
        with memoryview(buffer) as view:
            written = os.pwrite(self._fd, view[:length], self._size)
        if len(buffer) > KEPT_BUFFER:
            buffer.close()
            self._buffer = None
        if written != length:
            raise OSError(errno.EIO, f"{self._name}: {written} of {length} bytes written")

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._buffer is not None:
            self._buffer.close()
            self._buffer = None

    def _start(self, round_id: int) -> None:
        self.close()
        name = f"r{round_id:06d}/s{time.time_ns():x}-{os.getpid()}{SUFFIX}"
        path = self._dir / name
        created = not path.parent.is_dir()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, direct = _create(path)
        try:
            fsync_dir(path.parent)
            if created:
                fsync_dir(path.parent.parent)
        except BaseException:
            os.close(fd)
            raise
        self._fd, self._direct, self._name, self._round, self._size = fd, direct, name, round_id, 0


def _create(path: Path) -> tuple[int, bool]:
    """A new segment open for writing, and whether with ``O_DIRECT``
    (not every file system has it: tmpfs refuses it)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    direct = getattr(os, "O_DIRECT", 0)
    if direct:
        try:
            return os.open(path, flags | direct, 0o644), True
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
    return os.open(path, flags, 0o644), False


def _aligned(offset: int) -> int:
    return -(-offset // BLOCK) * BLOCK


def _write_all(fd: int, parts: list[bytes]) -> None:
    views = [memoryview(p) for p in parts if p]
    while views:
        written = os.writev(fd, views[:512])
        while written and views:
            if written >= len(views[0]):
                written -= len(views[0])
                views.pop(0)
            else:
                views[0] = views[0][written:]
                written = 0


def _checked_header(file_bytes: bytes, where: str, length: int) -> None:
    if len(file_bytes) != FRAME.size:
        raise TornRecord(f"{where}: the frame is cut short")
    magic, declared, _ = FRAME.unpack(file_bytes)
    if magic != MAGIC or declared != length:
        raise TornRecord(f"{where}: no record of {length} bytes starts here")


def read_record(path: Path, offset: int, length: int) -> bytes:
    """The payload of the record at ``offset``, checked against its frame."""
    where = f"{path} at {offset}"
    with open(path, "rb") as file:
        file.seek(offset)
        header = file.read(FRAME.size)
        _checked_header(header, where, length)
        payload = file.read(length)
    if len(payload) != length:
        raise TornRecord(f"{where}: {len(payload)} of {length} bytes")
    if hashlib.sha256(payload).digest() != FRAME.unpack(header)[2]:
        raise TornRecord(f"{where}: the bytes do not match their digest")
    return payload


def stored_span(blobs: BlobStore, row: UpdateRecord) -> FileSpan:
    """Where a row's update is, its frame checked (not its digest: block
    reads of the aggregation read only slices)."""
    if not row.segment:
        return FileSpan(blobs.local_path(row.path))
    path = blobs.local_path(row.segment)
    with open(path, "rb") as file:
        file.seek(row.segment_offset)
        _checked_header(file.read(FRAME.size), f"{path} at {row.segment_offset}", row.bytes)
    return FileSpan(path, row.segment_offset + FRAME.size, row.bytes)


def stored_bytes(blobs: BlobStore, row: UpdateRecord) -> bytes:
    """A row's update, read whole (and its digest checked, for a segment)."""
    if not row.segment:
        return blobs.get(row.path)
    return read_record(blobs.local_path(row.segment), row.segment_offset, row.bytes)


@dataclass(frozen=True)
class SegmentScan:
    records: list[SegmentRecord]  # the intact ones, in order
    intact_bytes: int  # where the first torn or foreign frame starts
    size: int

    @property
    def torn(self) -> bool:
        return self.intact_bytes != self.size


def scan(updates_dir: Path, segment: str) -> SegmentScan:
    """Every intact record of a segment, up to the first that is not."""
    path = updates_dir / segment
    records: list[SegmentRecord] = []
    size = os.stat(path).st_size
    offset = 0
    with open(path, "rb") as file:
        while offset < size:
            file.seek(offset)
            header = file.read(FRAME.size)
            if offset % BLOCK and not header.strip(b"\0"):
                # The zeros after a batch, up to the next one.
                gap = _aligned(offset) - offset
                file.seek(offset)
                if _aligned(offset) > size or file.read(gap).strip(b"\0"):
                    break
                offset += gap
                continue
            if len(header) != FRAME.size:
                break
            magic, length, digest = FRAME.unpack(header)
            if magic != MAGIC or offset + FRAME.size + length > size:
                break
            if hashlib.sha256(file.read(length)).digest() != digest:
                break
            records.append(SegmentRecord(segment, offset, length))
            offset += FRAME.size + length
    return SegmentScan(records, offset, size)


def segment_files(updates_dir: Path) -> list[str]:
    """Every segment under the updates directory, relative to it."""
    if not updates_dir.is_dir():
        return []
    return sorted(p.relative_to(updates_dir).as_posix() for p in updates_dir.glob(f"r*/*{SUFFIX}"))


def remove_unreferenced(
    updates_dir: Path, live: Iterable[str], spare_round: int | None = None
) -> list[str]:
    """Delete the segments no stored update points at (written by a batch
    that a crash cut off before its commit, or whose rows retention forgot
    before a crash kept it from deleting them); returns them. The segments
    of ``spare_round`` are left alone: with several workers on one data
    directory, another may be writing a batch into its own segment of the
    open round, whose rows are not committed yet."""
    keep = set(live)
    spared = None if spare_round is None else f"r{spare_round:06d}/"
    removed = [
        name
        for name in segment_files(updates_dir)
        if name not in keep and (spared is None or not name.startswith(spared))
    ]
    for name in removed:
        (updates_dir / name).unlink(missing_ok=True)
    return removed
