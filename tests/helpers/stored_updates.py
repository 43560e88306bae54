"""The update records a server's data directory holds in its segments,
read back as stored (each record's frame and digest checked)."""

from __future__ import annotations

from pathlib import Path

from fedge.server.storage.segments import read_record, scan, segment_files


def stored_records(updates: Path, round_id: int | None = None) -> list[bytes]:
    """Every intact record under ``updates`` (a data directory's
    ``updates/``), or only round ``round_id``'s, in segment order."""
    prefix = "" if round_id is None else f"r{round_id:06d}/"
    return [
        read_record(updates / r.segment, r.offset, r.length)
        for name in segment_files(updates)
        if name.startswith(prefix)
        for r in scan(updates, name).records
    ]
