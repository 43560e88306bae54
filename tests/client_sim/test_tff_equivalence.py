"""The proof that the HTTP system computes FedAvg: 3 rounds over real HTTP
give the same global weights as TFF's ``build_weighted_fed_avg`` on the
same clients and batches.

With the Keras runtime on the devices both sides use TensorFlow's kernels
and agree to float rounding. With the TFLite runtime (the default, what a
phone runs) TFLite's own forward kernels round differently; where a
max-pool window holds two equal values that rounding can move the
gradient to the other one, so agreement is tested at a learning rate
where such flips stay below the tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from fedge.client_sim.fleet import FleetConfig, run_fleet
from fedge.client_sim.tff_engine import run_tff_fedavg
from fedge.data import load_task
from fedge.model import build_reference_model
from fedge.partition import PartitionConfig, partition


@pytest.mark.parametrize(
    ("runtime", "learning_rate", "epochs"), [("keras", 0.1, 2), ("tflite", 0.02, 1)]
)
def test_three_rounds_agree_with_tff_within_1e_4(
    runtime: str, learning_rate: float, epochs: int
) -> None:
    config = FleetConfig(
        devices=6,
        per_round=3,
        rounds=3,
        alpha=0.5,
        seed=3,
        runtime=runtime,
        local_epochs=epochs,
        batch_size=16,
        learning_rate=learning_rate,
        workers=3,
    )

    report = run_fleet(config)

    assert [r.state for r in report.rounds] == ["closed"] * 3
    assert all(len(devices) == 3 for devices in report.selected.values())
    task = load_task(seed=config.seed)
    parts = partition(task.train.y, PartitionConfig(num_devices=6, alpha=0.5, seed=3))
    tf.keras.utils.set_random_seed(config.seed)
    initial_model = build_reference_model()
    names = [w.name.removesuffix(":0") for w in initial_model.weights]
    initial = dict(zip(names, initial_model.get_weights(), strict=True))
    reference = run_tff_fedavg(
        initial,
        names,
        lambda d: parts.device_data(d, task.train).train,
        report.selected,
        config.seed,
        config.local_epochs,
        config.batch_size,
        config.learning_rate,
    )

    moved = max(float(np.abs(report.final_weights[n] - initial[n]).max()) for n in names)
    gap = max(float(np.abs(report.final_weights[n] - reference.weights[n]).max()) for n in names)
    assert moved > 1e-2  # the rounds really trained
    assert gap <= 1e-4
