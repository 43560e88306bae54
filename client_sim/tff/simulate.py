"""``fedge simulate --engine tff``: the same FedAvg in-process with TFF."""

from __future__ import annotations

import click
import numpy as np

from fedge.client_sim.data.partition import PartitionConfig, partition
from fedge.client_sim.tff.engine import run_tff_fedavg, uniform_schedule
from fedge.reference.data import load_task
from fedge.wire.weight_spec import ModelSpec


def run_tff_simulation(
    devices: int,
    per_round: int,
    rounds: int,
    alpha: float,
    seed: int,
    epochs: int,
    batch_size: int,
    learning_rate: float,
) -> None:
    import tensorflow as tf

    from fedge.reference.model import build_reference_model

    task = load_task(seed=seed)
    parts = partition(task.train.y, PartitionConfig(num_devices=devices, alpha=alpha, seed=seed))
    tf.keras.utils.set_random_seed(seed)
    model = build_reference_model()
    spec = ModelSpec.from_keras(model)
    initial = spec.named(model.get_weights())
    schedule = uniform_schedule(devices, per_round, rounds, seed)
    run = run_tff_fedavg(
        initial,
        lambda d: parts.device_data(d, task.train).train,
        schedule,
        seed,
        epochs,
        batch_size,
        learning_rate,
    )
    model.set_weights(spec.values(run.weights))
    accuracy = float(np.mean(model.predict(task.test.x, verbose=0).argmax(axis=1) == task.test.y))
    click.echo(
        f"TFF FedAvg: {rounds} rounds of {per_round}/{devices} devices; "
        f"build {run.build_seconds:.1f} s, median round "
        f"{float(np.median(run.round_seconds)):.3f} s"
    )
    click.echo(f"final global test accuracy: {accuracy:.4f}")
