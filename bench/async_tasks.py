"""The learning tasks of :mod:`bench.async_vs_sync`, prepared without a server:
each device's examples, the global test split, the bundle's initial weights
and a factory of its TFLite trainers (``train.tflite``: what a phone runs).

* ``digits``: the reference task from a seeded random CNN
  (``public_fraction = 0``). The 8x8 digits have 1,438 private examples, too
  few for 1,000 devices: ``DIGITS_SHARDS`` shards, device ``i`` holding shard
  ``i % DIGITS_SHARDS`` in a handwriting style of its own
  (:func:`fedge.client_sim.data.fleet_data.reference_data`).
* ``text``: a user's model through the any-model path: the small
  Transformer text classifier of the model-kinds zoo
  (:mod:`bench.model_kinds_zoo`), saved as ``.keras``, converted to a bundle
  as ``fedge simulate --model`` does, and its synthetic per-device data as
  an ``.npz`` (each device its own filler vocabulary).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedge.client_sim.device.trainers import TfliteTrainer, Trainer
from fedge.client_sim.fleet.config import FleetConfig
from fedge.client_sim.fleet.device_data import fleet_data
from fedge.client_sim.fleet.model_source import build_bundle, training_manifest, user_bundle
from fedge.converters.targets.training_optimizer import TrainingOptimizer
from fedge.server.rounds.initial_model import load_initial_weights
from fedge.task.examples import DeviceExamples, Examples
from fedge.task.objective import Objective
from fedge.wire.update_codec import Update, UpdateMeta, Weights, encode_update

DIGITS_SHARDS = 100
TEXT_PER_DEVICE = 8
TASKS = ("digits", "text")


@dataclass(frozen=True)
class Task:
    name: str
    devices: tuple[DeviceExamples, ...]
    test: Examples
    objective: Objective
    initial: Weights
    make_trainer: Callable[[], Trainer]
    learning_rate: float
    local_epochs: int
    batch_size: int
    download_bytes: int  # a checkpoint: the model's weights
    upload_bytes: int  # one encoded update

    @property
    def metric(self) -> str:
        return self.objective.metric


@contextmanager
def prepared(name: str, devices: int, seed: int, work: Path) -> Iterator[Task]:
    """The task ``name`` (one of :data:`TASKS`) for ``devices`` devices."""
    (work / name).mkdir(parents=True, exist_ok=True)
    if name == "digits":
        bundle = build_bundle(work / "digits", seed)
        config = FleetConfig(
            devices=devices, public_fraction=0.0, seed=seed, data_shards=DIGITS_SHARDS
        )
        yield _task(name, bundle, config, learning_rate=0.1, local_epochs=2, batch_size=16)
    elif name == "text":
        model, data = _text_files(devices, seed, work / "text")
        bundle = user_bundle(model, work / "text", seed, lambda _: None)
        config = FleetConfig(devices=devices, seed=seed, model=model, data=data, min_examples=2)
        yield _task(name, bundle, config, learning_rate=0.05, local_epochs=2, batch_size=8)
    else:
        raise ValueError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")


def _task(
    name: str,
    bundle: Path,
    config: FleetConfig,
    learning_rate: float,
    local_epochs: int,
    batch_size: int,
) -> Task:
    verified, objective = training_manifest(bundle)
    manifest = verified.manifest
    data = fleet_data(config, manifest, objective)
    _, _, initial = load_initial_weights(bundle, config.seed)
    training = manifest.artifact("tflite")["training"]
    optimizer = TrainingOptimizer.from_record(training)
    path, spec = bundle / training["path"], manifest.weights

    def make_trainer() -> Trainer:
        return TfliteTrainer(path, spec, optimizer)

    meta = UpdateMeta(round_id=1, base_checkpoint="0" * 64, num_examples=1, metrics={"loss": 0.0})
    upload = len(encode_update(Update(meta=meta, deltas=initial)))
    return Task(
        name=name,
        devices=tuple(data.devices),
        test=data.test,
        objective=objective,
        initial=initial,
        make_trainer=make_trainer,
        learning_rate=learning_rate,
        local_epochs=local_epochs,
        batch_size=batch_size,
        download_bytes=sum(int(np.asarray(w).nbytes) for w in initial.values()),
        upload_bytes=upload,
    )


def _text_files(devices: int, seed: int, work: Path) -> tuple[Path, Path]:
    """The zoo's Transformer text classifier (``.keras``) and its devices' ``.npz``."""
    from bench.model_kinds_zoo import transformer, transformer_data

    work.mkdir(parents=True, exist_ok=True)
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    arrays = transformer_data(np.random.default_rng(seed), devices, TEXT_PER_DEVICE)
    model_path, data_path = work / "text_transformer.keras", work / "text.npz"
    transformer(arrays).save(model_path)
    np.savez(data_path, **arrays)
    return model_path, data_path
