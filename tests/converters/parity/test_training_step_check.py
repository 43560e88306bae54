"""The one-step check of ``train.tflite`` judges the step, not the weights.

A Conv2DTranspose autoencoder at a small learning rate moves no weight by
more than about 1e-6 in one SGD step, so an absolute 1e-5 bound on the
weights afterwards passes a ``train`` signature that does nothing. The
check compares the TFLite step's change of the weights with Keras's,
relative to the size of Keras's change: a no-op step is 100 % off.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

from fedge.bundle.manifest import verify_bundle
from fedge.converters.bundle import convert
from fedge.converters.options import ConvertOptions
from fedge.converters.parity.training import check_train_step


def _autoencoder() -> Any:
    tf.keras.utils.set_random_seed(11)
    layers = tf.keras.layers
    images = tf.keras.Input((8, 8, 1), name="images")
    code = layers.Conv2D(4, 3, strides=2, padding="same", activation="relu", name="enc")(images)
    out = layers.Conv2DTranspose(1, 3, strides=2, padding="same", activation="sigmoid", name="dec")(
        code
    )
    model = tf.keras.Model(images, out, name="autoencoder")
    model.compile(optimizer=tf.keras.optimizers.SGD(1e-4), loss="mse")
    return model


@pytest.fixture(scope="module")
def autoencoder_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    work = tmp_path_factory.mktemp("autoencoder")
    model = _autoencoder()
    model.save(work / "ae.keras")
    rng = np.random.default_rng(0)
    np.save(work / "images.npy", rng.uniform(0, 1, (16, 8, 8, 1)).astype(np.float32))
    options = ConvertOptions(targets=("tflite",), samples_path=work / "images.npy")
    convert(work / "ae.keras", work / "bundle", options)
    return model, work / "bundle"


class _NoOpTrainStep(tf.lite.Interpreter):  # type: ignore[misc]
    """``train.tflite`` whose ``train`` signature leaves the weights as they are."""

    def get_signature_runner(self, signature_key: str | None = None) -> Any:
        if signature_key == "train":
            return lambda **_: {"loss": np.float32(0.0)}
        return super().get_signature_runner(signature_key)


def _images() -> Any:
    return [np.random.default_rng(1).uniform(0, 1, (16, 8, 8, 1)).astype(np.float32)]


def test_the_real_training_step_of_an_autoencoder_passes(
    autoencoder_bundle: tuple[Any, Path],
) -> None:
    model, bundle = autoencoder_bundle
    manifest = verify_bundle(bundle)
    record = manifest.artifacts["tflite"]["training"]

    report = check_train_step(model, bundle, record, _images())

    assert manifest.parity["tflite_train"]["status"] == "pass"
    assert report.status == "pass", report.reason
    assert report.max_rel_err is not None and report.max_rel_err < 1e-2


def test_a_training_step_that_changes_nothing_fails(
    autoencoder_bundle: tuple[Any, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    model, bundle = autoencoder_bundle
    record = verify_bundle(bundle).artifacts["tflite"]["training"]
    monkeypatch.setattr(tf.lite, "Interpreter", _NoOpTrainStep)

    report = check_train_step(model, bundle, record, _images())

    assert report.status == "fail"
    assert report.max_abs_err is not None and report.max_abs_err < 1e-5  # why 1e-5 missed it
    assert "changed the weights" in report.reason
