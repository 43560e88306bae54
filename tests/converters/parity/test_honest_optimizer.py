"""The training artifact steps with the model's compiled optimizer (Adam,
SGD with momentum), as Keras does, its state kept on the device and zeroed
by ``set_weights``; plain SGD for the rest, as before."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import tensorflow as tf

from fedge.bundle.manifest import verify_bundle
from fedge.converters.bundle import convert
from fedge.converters.options import ConvertOptions

TFLITE = ConvertOptions(targets=("tflite",))


def _regressor(optimizer: Any) -> Any:
    tf.keras.utils.set_random_seed(4)
    inputs = tf.keras.Input((3,), name="readings")
    hidden = tf.keras.layers.Dense(8, activation="tanh", name="hidden")(inputs)
    outputs = tf.keras.layers.Dense(1, name="estimate")(hidden)
    model = tf.keras.Model(inputs, outputs, name="sensor_regressor")
    model.compile(optimizer=optimizer, loss="mse")
    return model


def _batches() -> list[tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]]:
    rng = np.random.default_rng(11)
    out = []
    for _ in range(3):
        x = rng.normal(0.0, 1.0, (16, 3)).astype(np.float32)
        out.append((x, (x @ np.array([[1.0], [-2.0], [0.5]])).astype(np.float32)))
    return out


class Artifact:
    """``train.tflite`` in the interpreter, as a device drives it."""

    def __init__(self, bundle: Path, training: dict[str, Any]) -> None:
        self.keys = training["weight_keys"]
        interpreter = tf.lite.Interpreter(model_path=str(bundle / training["path"]))
        self._set = interpreter.get_signature_runner("set_weights")
        self._train = interpreter.get_signature_runner("train")
        self._get = interpreter.get_signature_runner("get_weights")

    def steps(self, weights: list[Any], rate: float) -> list[Any]:
        self._set(**dict(zip(self.keys, weights, strict=True)))
        for x, y in _batches():
            self._train(readings=x, label=y, learning_rate=np.float32(rate))
        got = self._get()
        assert sorted(got) == sorted(self.keys)  # the optimizer's state stays inside
        return [got[k] for k in self.keys]


def _max_diff(a: list[Any], b: list[Any]) -> float:
    return max(float(np.max(np.abs(u - v))) for u, v in zip(a, b, strict=True))


@pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file:UserWarning")
@pytest.mark.parametrize(
    ("optimizer", "suffix", "name", "settings"),
    [
        (
            lambda: tf.keras.optimizers.Adam(0.01, beta_2=0.99),
            ".keras",
            "adam",
            {"learning_rate": 0.01, "beta_1": 0.9, "beta_2": 0.99, "epsilon": 1e-7},
        ),
        (
            lambda: tf.keras.optimizers.legacy.Adam(0.02),
            ".h5",
            "adam",
            {"learning_rate": 0.02, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
        ),
        (
            lambda: tf.keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
            ".keras",
            "sgd",
            {"learning_rate": 0.01, "momentum": 0.9, "nesterov": True},
        ),
    ],
    ids=["adam", "legacy-adam-h5", "sgd-nesterov"],
)
def test_the_artifact_takes_the_compiled_optimizer_s_steps(
    optimizer: Any, suffix: str, name: str, settings: dict[str, Any], tmp_path: Path
) -> None:
    path = tmp_path / f"regressor{suffix}"
    _regressor(optimizer()).save(path)

    result = convert(path, tmp_path / "b", TFLITE)

    training = verify_bundle(tmp_path / "b").artifacts["tflite"]["training"]
    assert training["optimizer"] == name
    assert training["optimizer_settings"].items() >= settings.items()
    assert result.manifest.parity["tflite_train"]["status"] == "pass"
    # Keras's own steps: the model as compiled and saved, a fresh optimizer.
    keras = tf.keras.models.load_model(path)
    before = keras.get_weights()
    for x, y in _batches():
        keras.train_on_batch(x, y)
    expected = keras.get_weights()
    artifact = Artifact(tmp_path / "b", training)
    got = artifact.steps(before, settings["learning_rate"])
    moved = _max_diff(expected, before)
    assert _max_diff(got, expected) <= 1e-4 * moved
    # set_weights starts a fresh optimizer: the same steps again, the same weights.
    assert _max_diff(artifact.steps(before, settings["learning_rate"]), got) <= 1e-6 * moved
    # Plain SGD steps at the same rate are elsewhere.
    sgd = tf.keras.models.clone_model(keras)
    sgd.set_weights(before)
    sgd.compile(optimizer=tf.keras.optimizers.SGD(settings["learning_rate"]), loss="mse")
    for x, y in _batches():
        sgd.train_on_batch(x, y)
    assert _max_diff(sgd.get_weights(), expected) > 0.1 * moved
    card = (tmp_path / "b" / "MODEL_CARD.md").read_text()
    assert f"steps with the compiled {name} (learning rate {settings['learning_rate']:g}" in card


def test_plain_sgd_and_old_records_stay_plain_sgd(tmp_path: Path) -> None:
    from fedge.converters.targets.training_optimizer import PLAIN_SGD, TrainingOptimizer

    path = tmp_path / "regressor.keras"
    _regressor(tf.keras.optimizers.SGD(0.03)).save(path)

    convert(path, tmp_path / "b", TFLITE)

    training = verify_bundle(tmp_path / "b").artifacts["tflite"]["training"]
    assert (training["optimizer"], training["optimizer_source"]) == ("sgd", "compiled SGD")
    assert TrainingOptimizer.from_record(training).stateful is False
    assert TrainingOptimizer.from_record(training).step_size(0.05) == 0.05  # the task's rate
    # A bundle written before the optimizer was carried.
    assert TrainingOptimizer.from_record({"optimizer": "sgd"}) == PLAIN_SGD


@pytest.mark.parametrize(
    ("optimizer", "source"),
    [
        (
            {"class_name": "RMSprop", "config": {"learning_rate": 0.001}},
            "compiled RMSprop: not carried, plain SGD",
        ),
        (
            {"class_name": "Adam", "config": {"learning_rate": 0.001, "amsgrad": True}},
            "compiled Adam with amsgrad: not carried, plain SGD",
        ),
        (
            {"class_name": "SGD", "config": {"learning_rate": 0.1, "clipnorm": 1.0}},
            "compiled SGD with clipnorm 1.0: not carried, plain SGD",
        ),
    ],
)
def test_optimizers_the_artifact_cannot_take_fall_back_to_plain_sgd_said_why(
    optimizer: dict[str, Any], source: str
) -> None:
    from fedge.converters.targets.training_optimizer import optimizer_from_config

    carried = optimizer_from_config({"optimizer": optimizer})

    assert (carried.stateful, carried.source) == (False, source)
