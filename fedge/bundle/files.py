"""One file of a bundle, as the manifest lists it.

The converters describe what an export wrote with it, and the server keeps
the files a stored bundle serves with it: one record, so the converter's
``files`` entries and what the server serves cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BundleFile:
    """One file by its path relative to the bundle root (POSIX separators),
    its sha256 in hex and its size; the field names are the manifest's."""

    path: str
    sha256: str
    bytes: int

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> BundleFile:
        """A manifest ``files`` entry (``{"path", "sha256", "bytes"}``)."""
        return cls(str(record["path"]), str(record["sha256"]), int(record["bytes"]))

    def to_record(self) -> dict[str, Any]:
        """The manifest ``files`` entry for this file."""
        return {"path": self.path, "sha256": self.sha256, "bytes": self.bytes}
