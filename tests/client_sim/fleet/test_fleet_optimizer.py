"""A model compiled with Adam federates with Adam on its devices.

The readings are small numbers (volts, say) and the regressor has no
normalisation: its gradients are tiny, so plain SGD at the task's learning
rate hardly moves it, while Adam's steps do not depend on the gradient's
scale. The devices train ``train.tflite`` in the TFLite interpreter over
real HTTP (run_fleet, the user's data path).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

from fedge.client_sim.fleet.config import FleetConfig
from fedge.client_sim.fleet.run import run_fleet
from fedge.wire.update_codec import Weights


@pytest.fixture(scope="module")
def readings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """400 readings on 4 sites: small inputs, a linear target."""
    rng = np.random.default_rng(3)
    x = rng.normal(0.0, 0.05, (400, 3)).astype(np.float32)
    y = (x @ np.array([3.0, -4.0, 2.0]) + rng.normal(0, 0.05, 400)).astype(np.float32)
    device = np.array([f"site-{i % 4}" for i in range(400)])
    path = tmp_path_factory.mktemp("data") / "readings.npz"
    np.savez(path, x=x, y=y, device=device)
    return path


def _regressor(folder: Path, optimizer: Any) -> Path:
    tf.keras.utils.set_random_seed(6)
    inputs = tf.keras.Input((3,), name="volts")
    outputs = tf.keras.layers.Dense(1, name="estimate")(inputs)
    model = tf.keras.Model(inputs, outputs, name="volt_regressor")
    model.compile(optimizer=optimizer, loss="mse")
    path = folder / "regressor.keras"
    model.save(path)
    return path


def _federate(model: Path, data: Path, work: Path) -> tuple[float, float]:
    """(deployed, final) mean squared error on the devices' own held-out data."""
    report = run_fleet(
        FleetConfig(
            model=model,
            data=data,
            per_round=4,
            rounds=3,
            local_epochs=3,
            learning_rate=0.05,
            workers=4,
            seed=0,
            work_dir=work,
        )
    )
    assert [r.state for r in report.rounds] == ["closed"] * 3
    return report.scores["deployed"].devices["loss"], report.scores["final"].devices["loss"]


def test_a_model_compiled_with_adam_learns_where_plain_sgd_does_not(
    readings: Path, tmp_path: Path
) -> None:
    (tmp_path / "adam").mkdir()
    (tmp_path / "sgd").mkdir()
    adam = _regressor(tmp_path / "adam", tf.keras.optimizers.Adam(0.05))
    sgd = _regressor(tmp_path / "sgd", tf.keras.optimizers.SGD(0.05))

    adam_before, adam_after = _federate(adam, readings, tmp_path / "adam" / "fleet")
    sgd_before, sgd_after = _federate(sgd, readings, tmp_path / "sgd" / "fleet")

    assert adam_before == pytest.approx(sgd_before)  # the same deployed model
    assert adam_after < 0.5 * adam_before, (adam_before, adam_after)
    # Plain SGD at the task's rate hardly moves (0.084 -> 0.083 when written).
    assert sgd_after > 0.9 * sgd_before, (sgd_before, sgd_after)
    assert adam_after < 0.5 * sgd_after


def test_both_device_runtimes_take_the_same_adam_steps_afresh_each_round(tmp_path: Path) -> None:
    from fedge.bundle.manifest import verify_bundle
    from fedge.client_sim.device.trainers import KerasTrainer, TfliteTrainer, Trainer
    from fedge.converters.bundle import convert
    from fedge.converters.options import ConvertOptions
    from fedge.converters.targets.training_loss import TrainingLoss

    path = _regressor(tmp_path, tf.keras.optimizers.Adam(0.05))
    convert(path, tmp_path / "b", ConvertOptions(targets=("tflite",)))
    manifest = verify_bundle(tmp_path / "b")
    training = manifest.artifacts["tflite"]["training"]
    loss = TrainingLoss.from_record(training)
    tflite = TfliteTrainer(tmp_path / "b" / training["path"], manifest.weights, loss.optimizer)
    keras = KerasTrainer(tf.keras.models.load_model(path), loss.keras(), loss.optimizer)
    rng = np.random.default_rng(0)
    x = {"volts": rng.normal(0.0, 0.05, (40, 3)).astype(np.float32)}
    y = (x["volts"] @ np.array([3.0, -4.0, 2.0])).astype(np.float32)[:, None]
    base = keras.get_weights()

    def one_round(trainer: Trainer) -> Weights:
        trainer.set_weights(base)
        # The task's rate is an SGD rate: Adam steps at its compiled 0.05.
        trainer.train(x, y, epochs=2, batch_size=8, learning_rate=5.0, seed=1)
        return trainer.get_weights()

    first, again, on_keras = one_round(tflite), one_round(tflite), one_round(keras)

    moved = max(float(np.max(np.abs(first[k] - base[k]))) for k in base)
    assert 0.2 < moved < 0.6  # ten Adam steps of about 0.05, not SGD steps at 5.0
    for key in base:
        np.testing.assert_allclose(again[key], first[key], atol=1e-6 * moved)
        np.testing.assert_allclose(on_keras[key], first[key], atol=1e-4 * moved)
