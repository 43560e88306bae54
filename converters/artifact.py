"""What one target's export wrote: files with hashes, and its options.

Every exporter returns an :class:`Artifact`; the bundle turns them into the
manifest's ``artifacts.<target>`` entries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedge.bundle.files import BundleFile
from fedge.bundle.hashing import sha256_file


@dataclass(frozen=True)
class Artifact:
    """A target's output inside a bundle.

    ``entry`` is the path a runtime opens (``tflite/model.tflite``,
    ``tfjs/model.json``, ``coreml/model.mlpackage``); ``files`` lists every
    file that belongs to it, each hashed.
    """

    target: str
    entry: str
    files: tuple[BundleFile, ...]
    options: Mapping[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def total_bytes(self) -> int:
        return sum(f.bytes for f in self.files)


def describe_files(bundle_dir: Path, paths: Iterable[Path]) -> tuple[BundleFile, ...]:
    """Hash files (or every file under directories) relative to ``bundle_dir``."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(p for p in path.rglob("*") if p.is_file())
        else:
            found.append(path)
    return tuple(
        BundleFile(
            path=p.relative_to(bundle_dir).as_posix(),
            sha256=sha256_file(p),
            bytes=p.stat().st_size,
        )
        for p in sorted(found)
    )
