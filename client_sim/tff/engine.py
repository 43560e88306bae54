"""TensorFlow Federated as the reference engine for the same FedAvg.

Same partition, same devices per round, same local batches (from
:func:`fedge.client_sim.device.trainers.epoch_batches` with the same seeds),
plain SGD on the devices and a server step of 1.0, weighted by examples:
``tff.learning.algorithms.build_weighted_fed_avg`` then computes exactly
what fedge's server computes over HTTP, and the two can be compared.
Everything runs inside :func:`fedge.client_sim.tff.runtime.tff_execution_context`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedge.client_sim.device.trainers import epoch_batches, train_seed
from fedge.reference.data import IMAGE_SHAPE, Split
from fedge.wire.update_codec import Weights
from fedge.wire.weight_spec import ModelSpec


@dataclass(frozen=True)
class TffRun:
    weights: Weights
    round_seconds: list[float]
    build_seconds: float


def uniform_schedule(devices: int, per_round: int, rounds: int, seed: int) -> dict[int, list[int]]:
    """A seeded choice of devices per round, for TFF runs on their own."""
    rng = random.Random(seed)
    return {r: sorted(rng.sample(range(devices), per_round)) for r in range(1, rounds + 1)}


def client_dataset(data: Split, epochs: int, batch_size: int, seed: int) -> Any:
    """The device's batches, in the order the device trains on them."""
    import tensorflow as tf

    parts = [
        tf.data.Dataset.from_tensors((data.x[batch], data.y[batch].astype(np.int32)))
        for batch in epoch_batches(len(data), epochs, batch_size, seed)
    ]
    dataset = parts[0]
    for part in parts[1:]:
        dataset = dataset.concatenate(part)
    return dataset


def run_tff_fedavg(
    initial: Weights,
    device_data: Callable[[int], Split],
    schedule: Mapping[int, Sequence[int]],
    fleet_seed: int,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    *,
    smooth_model: bool = False,
    weighted: bool = True,
) -> TffRun:
    """FedAvg over ``schedule`` from ``initial``; the final global weights,
    by canonical name in the order of ``initial``.

    ``smooth_model`` trains the reference CNN's smooth twin (see
    :func:`fedge.reference.model.build_reference_model`). ``weighted=False`` averages
    the devices' updates with equal weights
    (``build_unweighted_fed_avg``): not FedAvg, a control for tests that
    must tell the two apart.
    """
    import tensorflow as tf
    import tensorflow_federated as tff

    from fedge.client_sim.tff.runtime import tff_execution_context
    from fedge.reference.model import build_reference_model

    spec = (tf.TensorSpec([None, *IMAGE_SHAPE], tf.float32), tf.TensorSpec([None], tf.int32))

    def model_fn() -> Any:
        return tff.learning.models.from_keras_model(
            build_reference_model(smooth=smooth_model),
            loss=tf.keras.losses.SparseCategoricalCrossentropy(),
            input_spec=spec,
        )

    started = time.perf_counter()
    with tff_execution_context():
        build = (
            tff.learning.algorithms.build_weighted_fed_avg
            if weighted
            else tff.learning.algorithms.build_unweighted_fed_avg
        )
        process = build(
            model_fn,
            client_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=learning_rate),
            server_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=1.0),
        )
        state = process.initialize()
        weights = ModelSpec.from_keras(build_reference_model(smooth=smooth_model))
        trainable = weights.values(initial)
        state = process.set_model_weights(
            state, tff.learning.models.ModelWeights(trainable=trainable, non_trainable=[])
        )
        build_seconds = time.perf_counter() - started
        seconds = []
        for round_id in sorted(schedule):
            datasets = [
                client_dataset(
                    device_data(d), epochs, batch_size, train_seed(fleet_seed, d, round_id)
                )
                for d in schedule[round_id]
            ]
            tick = time.perf_counter()
            state = process.next(state, datasets).state
            seconds.append(time.perf_counter() - tick)
        final = process.get_model_weights(state)
    values = weights.named([np.asarray(v) for v in final.trainable])
    return TffRun({n: values[n] for n in initial}, seconds, build_seconds)
