"""A bundle's weights as a fedge checkpoint (``weights.safetensors``).

``fedge convert`` writes the model's weights, in the canonical order and
under the canonical names of the manifest's ``weights``, with the update
codec (:mod:`fedge.wire.update_codec`); the manifest lists the file as the
``weights`` artifact with its sha256, like every other file. Whoever needs
only the numbers (``fedge serve --model BUNDLE``, a device that trains)
reads them with NumPy, without loading the Keras model or importing
TensorFlow.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy.typing as npt

from fedge.bundle.manifest import Manifest, ManifestError
from fedge.wire.update_codec import (
    FORMAT,
    Checkpoint,
    CodecError,
    Weights,
    decode_checkpoint,
    encode_checkpoint,
)
from fedge.wire.weight_spec import ModelSpec

WEIGHTS_ARTIFACT = "weights"
WEIGHTS_FILE = "weights.safetensors"
# The artifact record's options, beside entry and files.
WEIGHTS_OPTIONS = {"format": "safetensors", "codec": FORMAT, "kind": "checkpoint"}


def write_weights(bundle_dir: Path, spec: ModelSpec, values: Sequence[npt.NDArray[Any]]) -> Path:
    """Write the weights: ``values`` in the spec's canonical order (what
    Keras's ``get_weights`` gives), stored under the spec's names."""
    weights = spec.named(values)
    path = bundle_dir / WEIGHTS_FILE
    path.write_bytes(encode_checkpoint(Checkpoint(round_id=0, weights=weights)))
    return path


def read_weights(bundle_dir: Path, manifest: Manifest) -> Weights | None:
    """The bundle's weights, checked against the manifest: the file's sha256
    (of the very bytes decoded) and the weight spec. None when the bundle
    has no weights artifact (written by a fedge before it wrote one)."""
    record = manifest.artifacts.get(WEIGHTS_ARTIFACT)
    if record is None:
        return None
    entry = record.get("entry")
    listed = {f["path"]: f for f in record.get("files", [])}
    if entry not in listed:
        raise ManifestError(f"the weights entry {entry!r} is not among the files it lists")
    root = bundle_dir.resolve()
    path = (bundle_dir / str(entry)).resolve()
    if root not in path.parents:
        raise ManifestError(f"manifest path escapes the bundle: {entry}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ManifestError(f"cannot read {entry}: {exc}") from exc
    if hashlib.sha256(data).hexdigest() != listed[entry]["sha256"]:
        raise ManifestError(
            f"{entry} does not match its sha256 in the manifest (corrupt or modified)"
        )
    try:
        return decode_checkpoint(data, expected=manifest.weights).weights
    except CodecError as exc:
        raise ManifestError(f"{entry} does not hold the manifest's weights: {exc}") from exc
