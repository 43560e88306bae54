"""Small real bundles for the release tests: one model, several weights.

Each bundle is made by ``fedge.converters.bundle.convert`` from a Keras
model saved here (TFLite only: about a second each). ``weights`` picks the
values, so two bundles of the same model differ only in their weights (and
bundle ids); ``other`` is a model of another shape; ``parity_fail`` is
converted at fp16 against a tolerance no fp16 model meets, with
``keep_failed``, so its manifest records a parity failure.

Test scaffolding, not part of the installed package.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedge.bundle.manifest import MANIFEST_FILE, MANIFEST_HASH_FILE, open_bundle

MODEL_NAME = "tinyrel"


@dataclass(frozen=True)
class Built:
    path: Path
    keras_path: Path
    bundle_id: str


def save_model(
    path: Path, weights: float, units: int = 3, name: str = MODEL_NAME, features: int = 4
) -> Path:
    """A dense softmax classifier over ``features`` inputs, every weight
    ``weights`` (plus a small ramp, so the outputs are not all equal)."""
    import tensorflow as tf

    inputs = tf.keras.Input((features,), name="x")
    outputs = tf.keras.layers.Dense(units, activation="softmax", name="dense")(inputs)
    model = tf.keras.Model(inputs, outputs, name=name)
    model.compile(loss="sparse_categorical_crossentropy", optimizer="sgd")
    ramp = np.arange(features * units, dtype=np.float32).reshape(features, units)
    ramp /= features * units
    kernel = np.full((features, units), weights, np.float32) + ramp
    model.set_weights([kernel, np.zeros(units, np.float32)])
    model.save(path)
    return path


@dataclass(frozen=True)
class BundlePair:
    """Two bundles of one model, different weights: a live release and its candidate."""

    first: Built
    second: Built


def build_pair(root: Path) -> BundlePair:
    return BundlePair(first=build(root, "first", 0.0), second=build(root, "second", 1.0))


def build(
    root: Path,
    label: str,
    weights: float,
    units: int = 3,
    parity_fail: bool = False,
    features: int = 4,
) -> Built:
    from fedge.converters.bundle import convert
    from fedge.converters.options import ConvertOptions, Tolerance

    keras_path = save_model(root / f"{label}.keras", weights, units, features=features)
    options = ConvertOptions(targets=("tflite",))
    if parity_fail:
        options = ConvertOptions(
            targets=("tflite",),
            tflite_quantize="fp16",
            keep_failed=True,
            target_tolerances={"tflite": Tolerance(max_abs_err=1e-12)},
        )
    result = convert(keras_path, root / label, options)
    return Built(result.path, keras_path, open_bundle(result.path).bundle_id)


def bundle_tar(bundle: Path, names: list[str] | None = None) -> bytes:
    """The bundle's files as an uncompressed tar (what ``fedge push`` sends)."""
    if names is None:
        manifest = open_bundle(bundle).manifest
        names = [MANIFEST_FILE, MANIFEST_HASH_FILE, *(f["path"] for f in manifest.files())]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in names:
            tar.add(bundle / name, arcname=name, recursive=False)
    return buffer.getvalue()
