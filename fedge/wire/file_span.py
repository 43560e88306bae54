"""Where an encoded update is stored: a whole file, or a span of one.

The server used to keep one file per update; it now appends the updates of
a group commit to a segment file (:mod:`fedge.server.storage.segments`),
so an update is ``length`` bytes at ``offset`` of a file. Readers (the
aggregation's block reads, recovery) take a :class:`FileSpan` either way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FileSpan:
    """Bytes ``[offset, offset + length)`` of ``path``; ``length`` None:
    from ``offset`` to the end of the file (a file of its own)."""

    path: Path
    offset: int = 0
    length: int | None = None

    def size(self) -> int:
        """The span's length in bytes (a stat for a whole file)."""
        if self.length is not None:
            return self.length
        return os.stat(self.path).st_size - self.offset

    def read(self) -> bytes:
        """The span's bytes; OSError when the file is shorter than the span."""
        with open(self.path, "rb") as file:
            file.seek(self.offset)
            data = file.read() if self.length is None else file.read(self.length)
        if self.length is not None and len(data) != self.length:
            raise OSError(
                f"{self.path}: {len(data)} bytes at {self.offset}, expected {self.length}"
            )
        return data


def span_of(where: str | os.PathLike[str] | FileSpan) -> FileSpan:
    """A path means the whole file."""
    return where if isinstance(where, FileSpan) else FileSpan(Path(where))
