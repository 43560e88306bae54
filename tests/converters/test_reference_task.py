"""The reference task's data goes to the reference model only, and every
bundle carries its weights as a checkpoint.

Digit labels, the digits test split and a test accuracy belong to the
reference model (recognised by its name and weight spec), not to any model
that happens to take 8x8x1 inputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from fedge.bundle.manifest import verify_bundle
from fedge.bundle.weights import WEIGHTS_ARTIFACT, WEIGHTS_FILE, read_weights
from fedge.converters.bundle import convert
from fedge.converters.options import ConvertOptions
from fedge.converters.parity.samples import is_reference_task, load_samples
from fedge.wire.update_codec import decode_checkpoint
from fedge.wire.weight_spec import ModelSpec
from tests.model_zoo import reference_cnn

TFLITE = ConvertOptions(targets=("tflite",), tflite_training=False)


def small_cnn(classes: int) -> tf.keras.Model:
    """Not the reference model, though it takes 8x8x1 images."""
    tf.keras.utils.set_random_seed(classes)
    inputs = tf.keras.Input((8, 8, 1), name="image")
    x = tf.keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = tf.keras.layers.Flatten(name="flatten")(x)
    outputs = tf.keras.layers.Dense(classes, activation="softmax", name="probs")(x)
    return tf.keras.Model(inputs, outputs, name=f"cnn_{classes}_classes")


def _saved(model: tf.keras.Model, tmp_path: Path) -> Path:
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    return path


@pytest.mark.parametrize("classes", [3, 10])
def test_another_8x8x1_model_gets_no_digit_labels_nor_digits_accuracy(
    classes: int, tmp_path: Path
) -> None:
    out = tmp_path / "bundle"

    convert(_saved(small_cnn(classes), tmp_path), out, TFLITE)

    manifest = verify_bundle(out)
    card = (out / "MODEL_CARD.md").read_text()
    assert manifest.labels is None
    assert "test_accuracy" not in manifest.artifacts["keras"]
    assert manifest.parity["tflite"]["status"] == "pass"
    assert manifest.parity["tflite"]["accuracy"] is None
    assert "Labels: none given." in card
    assert "Parity inputs: seeded random (seed 0: floats uniform in [0, 1)" in card
    assert manifest.parity["tflite"]["inputs"]["kind"] == "seeded random"
    assert "accuracy" not in card.lower()
    assert "digit" not in card.lower()


def test_another_model_gets_the_labels_and_samples_its_user_gives(tmp_path: Path) -> None:
    samples = tmp_path / "mine.npy"
    np.save(samples, np.random.default_rng(0).uniform(0, 1, (20, 8, 8, 1)).astype(np.float32))
    options = ConvertOptions(
        targets=("tflite",),
        tflite_training=False,
        labels=("cat", "dog", "fox"),
        samples_path=samples,
    )

    convert(_saved(small_cnn(3), tmp_path), tmp_path / "bundle", options)

    manifest = verify_bundle(tmp_path / "bundle")
    card = (tmp_path / "bundle" / "MODEL_CARD.md").read_text()
    assert manifest.labels == ("cat", "dog", "fox")
    assert manifest.parity["tflite"]["samples"] == 20
    assert f"Parity inputs: user samples ({samples}); image in [" in card
    assert "Labels: cat, dog, fox" in card


def test_the_reference_model_gets_the_digits_test_split_and_its_labels() -> None:
    model = reference_cnn()

    samples = load_samples(model, max_samples=30)

    assert is_reference_task(model)
    assert samples.source == "digits test split"
    assert samples.labels is not None and set(samples.labels.tolist()) <= set(range(10))
    assert not is_reference_task(small_cnn(10))
    assert load_samples(small_cnn(10), max_samples=30).labels is None


def test_a_bundle_carries_its_weights_as_a_checkpoint(tmp_path: Path) -> None:
    model = small_cnn(3)
    out = tmp_path / "bundle"

    convert(_saved(model, tmp_path), out, TFLITE)

    manifest = verify_bundle(out)
    record = manifest.artifacts[WEIGHTS_ARTIFACT]
    assert record["entry"] == WEIGHTS_FILE
    assert [f["path"] for f in record["files"]] == [WEIGHTS_FILE]
    assert manifest.weights == ModelSpec.from_keras(model)
    stored = decode_checkpoint((out / WEIGHTS_FILE).read_bytes(), expected=manifest.weights)
    read = read_weights(out, manifest)
    assert read is not None
    for name, value in zip(manifest.weights.names, model.get_weights(), strict=True):
        np.testing.assert_array_equal(stored.weights[name], value, err_msg=name)
        np.testing.assert_array_equal(read[name], value, err_msg=name)
