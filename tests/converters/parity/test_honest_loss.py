"""Which loss the training artifact takes: read from each saved format,
parsed from Keras's configs, and one step of each kind matching Keras's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

from fedge.bundle.manifest import verify_bundle
from fedge.converters.bundle import convert
from fedge.converters.options import ConvertOptions
from fedge.converters.targets.training_loss import (
    UnsupportedLossError,
    loss_from_config,
    read_compile_config,
    resolve_loss,
    sgd_learning_rate,
)
from tests.converters.zoo_users import logits_classifier

layers = tf.keras.layers


@pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file:UserWarning")
@pytest.mark.parametrize("suffix", [".keras", ".h5", ""], ids=["keras", "h5", "saved_model"])
def test_the_compiled_loss_is_read_from_every_saved_format(suffix: str, tmp_path: Path) -> None:
    path = tmp_path / f"model{suffix}"
    logits_classifier(learning_rate=0.1).save(path)
    uncompiled = tf.keras.models.load_model(path, compile=False)

    loss = resolve_loss(uncompiled, path, ConvertOptions())

    assert read_compile_config(path) is not None
    assert (loss.name, loss.from_logits, loss.source) == (
        "sparse_categorical_crossentropy",
        True,
        "compiled",
    )
    assert (loss.learning_rate, loss.learning_rate_source) == (0.1, "compiled SGD")


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("mse", ("mean_squared_error", False)),
        ("categorical_crossentropy", ("categorical_crossentropy", False)),
        (
            {"class_name": "BinaryCrossentropy", "config": {"from_logits": True}},
            ("binary_crossentropy", True),
        ),
        (
            {"module": "keras.losses", "class_name": "MeanAbsoluteError", "config": {}},
            ("mean_absolute_error", False),
        ),
    ],
)
def test_saved_loss_configs_are_understood(config: Any, expected: tuple[str, bool]) -> None:
    assert loss_from_config(config) == expected


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("huber", "the model is compiled with loss 'huber', which train.tflite does not take"),
        ({"probs": "mse", "value": "mae"}, "the model is compiled with a loss per output"),
        (
            {"class_name": "CategoricalCrossentropy", "config": {"label_smoothing": 0.1}},
            "the compiled CategoricalCrossentropy smooths labels (0.1)",
        ),
    ],
)
def test_losses_the_artifact_cannot_take_are_named(config: Any, message: str) -> None:
    with pytest.raises(UnsupportedLossError) as caught:
        loss_from_config(config)

    assert str(caught.value).startswith(message)
    assert "give --loss" in str(caught.value)


def test_only_an_sgd_rate_becomes_the_default() -> None:
    adam = {"optimizer": {"class_name": "Adam", "config": {"learning_rate": 0.001}}}
    sgd = {"optimizer": {"class_name": "SGD", "config": {"learning_rate": 0.009999999776}}}

    assert sgd_learning_rate(adam) == (None, "compiled Adam: not an SGD rate")
    assert sgd_learning_rate(sgd) == (0.01, "compiled SGD")


def test_a_compiled_loss_the_artifact_cannot_take_means_no_artifact_said_why(
    tmp_path: Path,
) -> None:
    model = logits_classifier()
    model.compile(optimizer="sgd", loss=tf.keras.losses.Huber())
    path = tmp_path / "huber.keras"
    model.save(path)

    result = convert(path, tmp_path / "b", ConvertOptions(targets=("tflite",)))

    record = verify_bundle(tmp_path / "b").artifacts["tflite"]
    assert record["training"] is None
    assert record["training_skipped"].startswith("the model is compiled with loss Huber")
    assert not result.failed


def _head(units: int, activation: str | None, loss: Any) -> Any:
    tf.keras.utils.set_random_seed(8)
    model = tf.keras.Sequential(
        [
            tf.keras.Input((6,), name="features"),
            layers.Dense(5, activation="tanh", name="hidden"),
            layers.Dense(units, activation=activation, name="out"),
        ],
        name="head",
    )
    model.compile(optimizer=tf.keras.optimizers.SGD(0.2), loss=loss)
    return model


@pytest.mark.parametrize(
    ("units", "activation", "loss", "labels"),
    [
        (3, "softmax", "categorical_crossentropy", "one_hot"),
        (1, None, tf.keras.losses.BinaryCrossentropy(from_logits=True), "binary"),
        (2, None, "mae", "values"),
    ],
    ids=["categorical", "binary-logits", "mae"],
)
def test_one_step_of_each_loss_is_keras_s_step(
    units: int, activation: str | None, loss: Any, labels: str, tmp_path: Path
) -> None:
    path = tmp_path / "head.keras"
    _head(units, activation, loss).save(path)
    rng = np.random.default_rng(9)
    x = rng.normal(0.0, 1.0, (16, 6)).astype(np.float32)
    y = {
        "one_hot": np.eye(3, dtype=np.float32)[rng.integers(0, 3, 16)],
        "binary": rng.integers(0, 2, (16, 1)).astype(np.float32),
        "values": rng.normal(0.0, 1.0, (16, 2)).astype(np.float32),
    }[labels]

    result = convert(path, tmp_path / "b", ConvertOptions(targets=("tflite",)))

    training = result.manifest.artifacts["tflite"]["training"]
    assert result.manifest.parity["tflite_train"]["status"] == "pass"
    keras = tf.keras.models.load_model(path)
    before = keras.get_weights()
    keras.train_on_batch(x, y)
    interpreter = tf.lite.Interpreter(model_path=str(tmp_path / "b" / training["path"]))
    keys = training["weight_keys"]
    interpreter.get_signature_runner("set_weights")(**dict(zip(keys, before, strict=True)))
    interpreter.get_signature_runner("train")(
        features=x, label=y, learning_rate=np.float32(training["learning_rate"])
    )
    got = interpreter.get_signature_runner("get_weights")()
    for key, want, old in zip(keys, keras.get_weights(), before, strict=True):
        np.testing.assert_allclose(got[key], want, atol=1e-5)
        assert not np.allclose(want, old)  # the step moved every weight
