"""The bundle manifest: what a bundle holds, with a sha256 for every file.

``manifest.json`` sits at the bundle's root. It is written by ``fedge
convert`` and read by ``fedge predict``, the server's release registry and
the devices. ``weights`` is the canonical ordered list of weight names,
shapes and dtypes that every runtime and the update codec use, a
:class:`~fedge.wire.weight_spec.ModelSpec`; ``inputs`` and ``outputs`` are
:class:`TensorSpec` (a dimension may be ``None``: the batch).

The manifest protects itself too. The **bundle id** is the sha256 of
``manifest.json``'s bytes, exactly as written; since the manifest holds the
sha256 of every other file, the id covers the whole bundle. It is written
beside the manifest as ``manifest.sha256`` (``sha256sum``'s format, so
``sha256sum -c manifest.sha256`` checks it too), and :func:`open_bundle`
checks and reports it: an edited manifest, or a file swapped together with
its hash, no longer passes.

The limit: whoever can rewrite the manifest can rewrite ``manifest.sha256``
as well, so the file only catches edits and corruption. To tell a tampered
bundle from the published one, a device needs the published id from a
channel it trusts (the release registry it enrolled with, a signed
release note) and passes it as ``expected_id``; a signature over the id
would make that channel unnecessary. Bundles written before the id existed
have no ``manifest.sha256``: they are read, reported as not sealed, and
still checked against an ``expected_id``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fedge.bundle.hashing import is_sha256, sha256_bytes, sha256_file
from fedge.errors import FedgeError
from fedge.wire.weight_spec import ModelSpec, WeightSpecError

FORMAT = "fedge-bundle/1"
MANIFEST_FILE = "manifest.json"
MANIFEST_HASH_FILE = "manifest.sha256"


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
    # Names of a vector input's values, by input name (``fedge convert
    # --feature-names`` or a samples CSV's header): a form names its fields
    # from here. Optional; older bundles have none.
    features: dict[str, list[str]] = field(default_factory=dict)
    # A token sequence input's vocabulary, by input name, the id as index
    # (0 padding, 1 out-of-vocabulary; ``fedge convert --vocabulary``): a
    # page takes text for it. Optional, and left out of the JSON when empty.
    vocabularies: dict[str, list[str]] = field(default_factory=dict)
    format: str = FORMAT

    def to_json(self) -> dict[str, Any]:
        raw = {"format": self.format, **asdict(self)}
        for key in ("inputs", "outputs"):
            raw[key] = [dict(spec, shape=list(spec["shape"])) for spec in raw[key]]
        raw["weights"] = self.weights.to_json()
        raw["labels"] = list(self.labels) if self.labels is not None else None
        # Optional fields are left out when empty, so a bundle that uses
        # neither keeps the manifest (and its hash) it had before them.
        for optional in ("features", "vocabularies"):
            if not raw[optional]:
                del raw[optional]
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
                features={
                    str(k): [str(n) for n in v] for k, v in dict(raw.get("features", {})).items()
                },
                vocabularies={
                    str(k): [str(t) for t in v]
                    for k, v in dict(raw.get("vocabularies", {})).items()
                },
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
    """Write ``manifest.json`` and seal it (``manifest.sha256``)."""
    path = bundle_dir / MANIFEST_FILE
    path.write_text(json.dumps(manifest.to_json(), indent=2, sort_keys=False) + "\n")
    seal_manifest(bundle_dir)
    return path


def seal_manifest(bundle_dir: Path) -> str:
    """Write ``manifest.sha256`` for the ``manifest.json`` on disk; return the bundle id."""
    bundle_id = sha256_bytes((bundle_dir / MANIFEST_FILE).read_bytes())
    (bundle_dir / MANIFEST_HASH_FILE).write_text(f"{bundle_id}  {MANIFEST_FILE}\n")
    return bundle_id


def _read_bytes(bundle_dir: Path) -> bytes:
    path = bundle_dir / MANIFEST_FILE
    if not path.is_file():
        raise ManifestError(f"{bundle_dir} is not a bundle: no {MANIFEST_FILE}")
    return path.read_bytes()


def _parse(path: Path, data: bytes) -> Manifest:
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ManifestError(f"{path} must hold a JSON object")
    return Manifest.from_json(raw)


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle whose files match its manifest.

    ``bundle_id``: the sha256 of ``manifest.json``'s bytes; ``sealed``:
    whether ``manifest.sha256`` was there (and matched).
    """

    manifest: Manifest
    bundle_id: str
    sealed: bool


def open_bundle(bundle_dir: Path, expected_id: str | None = None) -> VerifiedBundle:
    """Check the manifest against ``expected_id`` (the published bundle id,
    if known) and ``manifest.sha256``, then every listed file's size and sha256."""
    if expected_id is not None and not is_sha256(expected_id):
        raise ManifestError(f"a bundle id is 64 hex digits (a sha256); got {expected_id!r}")
    data = _read_bytes(bundle_dir)
    bundle_id = sha256_bytes(data)
    if expected_id is not None and bundle_id != expected_id.lower():
        raise ManifestError(
            f"bundle id {bundle_id} is not the expected {expected_id.lower()}: "
            "this bundle's manifest is not the published one"
        )
    sealed = _check_seal(bundle_dir, bundle_id)
    manifest = _parse(bundle_dir / MANIFEST_FILE, data)
    _check_files(bundle_dir, manifest)
    return VerifiedBundle(manifest, bundle_id, sealed)


def verify_bundle(bundle_dir: Path, expected_id: str | None = None) -> Manifest:
    """The manifest of a bundle that passes :func:`open_bundle`."""
    return open_bundle(bundle_dir, expected_id).manifest


def _check_seal(bundle_dir: Path, bundle_id: str) -> bool:
    """Whether ``manifest.sha256`` is there; raises if it does not match."""
    path = bundle_dir / MANIFEST_HASH_FILE
    if not path.is_file():
        return False
    fields = path.read_text(errors="replace").split()
    if len(fields) != 2 or fields[1] != MANIFEST_FILE or not is_sha256(fields[0]):
        raise ManifestError(
            f"{MANIFEST_HASH_FILE} must hold the sha256 of {MANIFEST_FILE} "
            f"('<64 hex digits>  {MANIFEST_FILE}'); it holds something else"
        )
    if fields[0].lower() != bundle_id:
        raise ManifestError(
            f"{MANIFEST_FILE} does not match {MANIFEST_HASH_FILE} (edited after it was "
            f"written?): its sha256 is {bundle_id}, {MANIFEST_HASH_FILE} says {fields[0]}"
        )
    return True


def _check_files(bundle_dir: Path, manifest: Manifest) -> None:
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
