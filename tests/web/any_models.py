"""Small Keras models of several kinds, for the pages built from a manifest.

Each is what a new user brings: a tabular classifier (named features from a
CSV header), a tabular regressor with a Normalization layer (names from
``--feature-names``), an image model of another shape and channel count
(32x32x3), a model with two named inputs, and a GRU regressor whose TF.js
model can only be a graph model (inference only). They are compiled with SGD so
that a bundle records their loss; converting them is slow, so the tests
share one bundle of each (session fixtures in ``conftest.py``).

Test scaffolding, not part of the installed package.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedge.converters.bundle import convert
from fedge.converters.options import ConvertOptions

TABULAR_FEATURES = ("age", "income", "visits", "tenure", "basket", "returns")
REGRESSOR_FEATURES = ("rooms", "area", "distance", "floor")
IRIS_LABELS = ("bronze", "silver", "gold")


@dataclass(frozen=True)
class Built:
    """A converted model: its Keras file, its bundle, and a few real-valued rows."""

    kind: str
    keras: Path
    bundle: Path
    rows: dict[str, Any]  # input name -> array [n, ...]


def _tabular_classifier(tf: Any) -> Any:
    inputs = tf.keras.Input((6,), name="features")
    hidden = tf.keras.layers.Dense(16, activation="relu")(inputs)
    outputs = tf.keras.layers.Dense(3, activation="softmax", name="tier")(hidden)
    model = tf.keras.Model(inputs, outputs, name="tabular_classifier")
    model.compile(optimizer=tf.keras.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy")
    return model


def _tabular_regressor(tf: Any, rows: Any) -> Any:
    inputs = tf.keras.Input((4,), name="house")
    norm = tf.keras.layers.Normalization(name="norm")
    norm.adapt(rows)
    hidden = tf.keras.layers.Dense(8, activation="relu")(norm(inputs))
    outputs = tf.keras.layers.Dense(1, name="price")(hidden)
    model = tf.keras.Model(inputs, outputs, name="tabular_regressor")
    model.compile(optimizer=tf.keras.optimizers.SGD(0.01), loss="mean_squared_error")
    return model


def _gru_regressor(tf: Any) -> Any:
    """Keras 2's default GRU (reset_after=True), which tfjs-layers cannot build:
    its bundle is a TF.js graph model, so the browser predicts but cannot train."""
    inputs = tf.keras.Input((6,), name="readings")
    x = tf.keras.layers.Reshape((3, 2))(inputs)
    x = tf.keras.layers.GRU(4, name="gru")(x)
    outputs = tf.keras.layers.Dense(1, name="level")(x)
    model = tf.keras.Model(inputs, outputs, name="gru_regressor")
    model.compile(optimizer=tf.keras.optimizers.SGD(0.01), loss="mean_squared_error")
    return model


def _image_model(tf: Any) -> Any:
    inputs = tf.keras.Input((32, 32, 3), name="photo")
    x = tf.keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = tf.keras.layers.MaxPooling2D(4)(x)
    x = tf.keras.layers.Flatten()(x)
    outputs = tf.keras.layers.Dense(4, activation="softmax", name="scene")(x)
    model = tf.keras.Model(inputs, outputs, name="image_rgb")
    model.compile(optimizer=tf.keras.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy")
    return model


def _two_inputs(tf: Any) -> Any:
    a = tf.keras.Input((3,), name="sensor")
    b = tf.keras.Input((2,), name="context")
    x = tf.keras.layers.Concatenate()([a, b])
    x = tf.keras.layers.Dense(8, activation="tanh")(x)
    outputs = tf.keras.layers.Dense(2, activation="softmax", name="state")(x)
    model = tf.keras.Model([a, b], outputs, name="two_inputs")
    model.compile(optimizer=tf.keras.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy")
    return model


TEXT_VOCABULARY = ("the", "cat", "dog", "sat", "ran", "on", "mat", "fast", "red", "ball")


def _text_classifier(tf: Any) -> Any:
    """Token ids (0 padding, 1 unknown, 2.. the vocabulary) to one of three topics."""
    inputs = tf.keras.Input((8,), dtype="int32", name="tokens")
    x = tf.keras.layers.Embedding(len(TEXT_VOCABULARY) + 2, 4)(inputs)
    x = tf.keras.layers.GlobalAveragePooling1D()(x)
    outputs = tf.keras.layers.Dense(3, activation="softmax", name="topic")(x)
    model = tf.keras.Model(inputs, outputs, name="text_classifier")
    model.compile(optimizer=tf.keras.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy")
    return model


def build(kind: str, root: Path) -> Built:
    """Build, save and convert (``tflite,tfjs``) one model of ``kind``."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(7)
    rng = np.random.default_rng(7)
    root.mkdir(parents=True, exist_ok=True)
    samples: Path | None = None
    options: dict[str, Any] = {}
    if kind == "tabular_classifier":
        rows = {"features": rng.normal(size=(40, 6)).astype(np.float32) * 3}
        model = _tabular_classifier(tf)
        # The feature names come from the samples' CSV header, as a user's data file has them.
        samples = root / "samples.csv"
        lines = [",".join(TABULAR_FEATURES)]
        lines += [",".join(f"{v:.6f}" for v in row) for row in rows["features"]]
        samples.write_text("\n".join(lines) + "\n")
        options["labels"] = IRIS_LABELS
    elif kind == "tabular_regressor":
        rows = {"house": (rng.normal(size=(40, 4)) * [1, 40, 5, 3] + [3, 90, 10, 2]).astype("f4")}
        model = _tabular_regressor(tf, rows["house"])
        samples = root / "samples.npy"
        np.save(samples, rows["house"])
        options["feature_names"] = {"house": REGRESSOR_FEATURES}
    elif kind == "gru_regressor":
        rows = {"readings": rng.normal(size=(12, 6)).astype(np.float32)}
        model = _gru_regressor(tf)
    elif kind == "image_rgb":
        rows = {"photo": rng.uniform(size=(12, 32, 32, 3)).astype(np.float32)}
        model = _image_model(tf)
    elif kind == "two_inputs":
        rows = {
            "sensor": rng.normal(size=(12, 3)).astype(np.float32),
            "context": rng.normal(size=(12, 2)).astype(np.float32),
        }
        model = _two_inputs(tf)
    elif kind == "text_classifier":
        rows = {"tokens": rng.integers(0, len(TEXT_VOCABULARY) + 2, size=(12, 8)).astype("i4")}
        model = _text_classifier(tf)
        samples = root / "samples.npy"
        np.save(samples, rows["tokens"])
        options["vocabularies"] = {"": TEXT_VOCABULARY}
    else:
        raise ValueError(f"no model kind {kind!r}")
    keras_path = root / f"{kind}.keras"
    model.save(keras_path)
    bundle = root / "bundle"
    convert(
        keras_path,
        bundle,
        ConvertOptions(targets=("tflite", "tfjs"), samples_path=samples, **options),
    )
    return Built(kind, keras_path, bundle, rows)
