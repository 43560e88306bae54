"""A device's personalisation: on-device acceptance keeps the better model."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from fedge.client_sim.device.client import FedgeClient
from fedge.client_sim.device.profiles import DeviceProfile, fleet_profiles
from fedge.client_sim.device.simulated import SimDevice
from fedge.client_sim.device.trainers import KerasTrainer, TrainerPool, epoch_batches
from fedge.client_sim.device.transport import HttpTransport
from fedge.reference.data import load_task
from fedge.reference.model import INPUT_NAME, build_reference_model
from fedge.task.examples import DeviceExamples, Examples
from fedge.task.objective import Objective
from fedge.wire.update_codec import Weights


def _device_with_keras_runtime() -> tuple[SimDevice, Weights, list[str]]:
    tf.keras.utils.set_random_seed(0)
    model = build_reference_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    task = load_task(seed=0)
    model.fit(task.train.x, task.train.y, epochs=5, batch_size=32, verbose=0)
    trainer = KerasTrainer(model, tf.keras.losses.SparseCategoricalCrossentropy())
    trained = trainer.spec.named(model.get_weights())
    test = Examples.of_split(task.test, INPUT_NAME)
    data = DeviceExamples(train=test, holdout=test)
    client = FedgeClient(HttpTransport("http://127.0.0.1:9"))  # never called here
    pool = TrainerPool(lambda: trainer, 1)
    return (
        SimDevice(
            0,
            data,
            pool,
            client,
            DeviceProfile(),
            seed=0,
            objective=Objective(loss="sparse_categorical_crossentropy"),
        ),
        trained,
        list(trainer.spec.names),
    )


def test_a_better_global_model_is_adopted_and_a_worse_one_is_not() -> None:
    device, trained, names = _device_with_keras_runtime()
    untrained = {n: np.zeros_like(trained[n]) for n in names}  # predicts class 0 everywhere

    good = device.offer_global(trained)["accuracy"]
    bad = device.offer_global(untrained)["accuracy"]

    assert good > 0.9
    assert bad < 0.2
    assert device.personal_score == good
    assert device.personal is not None
    np.testing.assert_array_equal(device.personal[names[0]], trained[names[0]])


def test_batches_cover_every_example_once_per_epoch() -> None:
    batches = list(epoch_batches(10, 2, 4, seed=3))

    assert [len(b) for b in batches] == [4, 4, 2, 4, 4, 2]
    assert sorted(np.concatenate(batches[:3]).tolist()) == list(range(10))
    again = list(epoch_batches(10, 2, 4, seed=3))
    assert all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))


def test_fleet_profiles_assign_faults_in_order() -> None:
    profiles = fleet_profiles(5, dropout=0.1, faults={"nan": 1, "replay": 2})

    assert [p.fault for p in profiles] == ["nan", "replay", "replay", None, None]
    assert all(p.dropout == 0.1 for p in profiles)
