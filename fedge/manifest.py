"""The bundle manifest: what a bundle holds, with a sha256 for every file.

``manifest.json`` sits at the bundle's root. It is written by ``fedge
convert`` and read by ``fedge predict``, the server's release registry and
the devices. ``weights`` is the canonical ordered list of weight names,
shapes and dtypes that every runtime and the update codec use, a
:class:`~fedge.weight_spec.ModelSpec`; ``inputs`` and ``outputs`` are
:class:`TensorSpec` (a dimension may be ``None``: the batch).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fedge.errors import FedgeError
from fedge.hashing import sha256_file
from fedge.weight_spec import ModelSpec, WeightSpecError

FORMAT = "fedge-bundle/1"
MANIFEST_FILE = "manifest.json"


class ManifestError(FedgeError):
    """A manifest is missing or malformed, or a file does not match it."""


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output: name, shape (``None`` for a free dimension), dtype."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> TensorSpec:
        return cls(
            name=str(raw["name"]),
            shape=tuple(None if d is None else int(d) for d in raw["shape"]),
            dtype=str(raw["dtype"]),
        )


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    created: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    weights: ModelSpec
    labels: tuple[str, ...] | None
    artifacts: dict[str, dict[str, Any]]
    parity: dict[str, dict[str, Any]]
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    format: str = FORMAT

    def to_json(self) -> dict[str, Any]:
        raw = {"format": self.format, **asdict(self)}
        for key in ("inputs", "outputs"):
            raw[key] = [dict(spec, shape=list(spec["shape"])) for spec in raw[key]]
        raw["weights"] = self.weights.to_json()
        raw["labels"] = list(self.labels) if self.labels is not None else None
        return raw

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Manifest:
        try:
            if raw.get("format") != FORMAT:
                raise ManifestError(
                    f"unknown bundle format {raw.get('format')!r}; expected {FORMAT!r}"
                )
            labels = raw.get("labels")
            return cls(
                name=str(raw["name"]),
                version=str(raw["version"]),
                created=str(raw["created"]),
                inputs=tuple(TensorSpec.from_json(s) for s in raw["inputs"]),
                outputs=tuple(TensorSpec.from_json(s) for s in raw["outputs"]),
                weights=ModelSpec.from_json(raw["weights"]),
                labels=tuple(str(x) for x in labels) if labels is not None else None,
                artifacts=dict(raw["artifacts"]),
                parity=dict(raw.get("parity", {})),
                documents=dict(raw.get("documents", {})),
                failures=dict(raw.get("failures", {})),
            )
        except (KeyError, TypeError, ValueError, WeightSpecError) as exc:
            raise ManifestError(f"malformed manifest: {type(exc).__name__}: {exc}") from exc

    def files(self) -> list[dict[str, Any]]:
        """Every file the manifest accounts for (artifacts and documents)."""
        listed = [f for record in self.artifacts.values() for f in record.get("files", [])]
        listed.extend(self.documents.values())
        return listed

    def artifact(self, target: str) -> dict[str, Any]:
        if target not in self.artifacts:
            have = ", ".join(sorted(self.artifacts)) or "none"
            raise ManifestError(
                f"bundle {self.name} v{self.version} has no {target!r} artifact (it has: {have})"
            )
        return self.artifacts[target]


def write_manifest(bundle_dir: Path, manifest: Manifest) -> Path:
    path = bundle_dir / MANIFEST_FILE
    path.write_text(json.dumps(manifest.to_json(), indent=2, sort_keys=False) + "\n")
    return path


def read_manifest(bundle_dir: Path) -> Manifest:
    path = bundle_dir / MANIFEST_FILE
    if not path.is_file():
        raise ManifestError(f"{bundle_dir} is not a bundle: no {MANIFEST_FILE}")
    try:
        raw = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ManifestError(f"{path} must hold a JSON object")
    return Manifest.from_json(raw)


def verify_bundle(bundle_dir: Path) -> Manifest:
    """Read the manifest and check every listed file's size and sha256."""
    manifest = read_manifest(bundle_dir)
    root = bundle_dir.resolve()
    for record in manifest.files():
        path = (bundle_dir / record["path"]).resolve()
        if root not in path.parents:
            raise ManifestError(f"manifest path escapes the bundle: {record['path']}")
        if not path.is_file():
            raise ManifestError(f"missing file {record['path']} (listed in the manifest)")
        size = path.stat().st_size
        if size != record["bytes"]:
            raise ManifestError(
                f"{record['path']} has {size} bytes; the manifest says {record['bytes']}"
            )
        if sha256_file(path) != record["sha256"]:
            raise ManifestError(
                f"{record['path']} does not match its sha256 in the manifest (corrupt or modified)"
            )
    return manifest
