"""A share of a fleet's devices in one process: the Ray backend's actor.

The thread backend (:mod:`fedge.client_sim.fleet.threads`) keeps every
:class:`~fedge.client_sim.device.simulated.SimDevice` in the fleet's own process. The
Ray backend (:mod:`fedge.client_sim.fleet.ray.backend`) spreads them over
:class:`DeviceHost` actors instead, on whatever machines the cluster has:
each host builds its devices from what it is sent once (their data, their
profiles, the model's training artifact) and keeps their state from then
on (personalised weights, held-out data, counters, HTTP clients). The
driver sends only round ids, device orders and global weights; the devices
talk to the server over HTTP as they do in the thread backend, so the
server can be anywhere the cluster reaches.

Nothing here imports Ray: a host is a plain object (Ray makes it an actor),
so it can be read and tested on its own.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedge.bundle.manifest import Manifest
from fedge.client_sim.device.client import FedgeClient
from fedge.client_sim.device.keepalive import device_transport, fleet_connections
from fedge.client_sim.device.profiles import DeviceProfile
from fedge.client_sim.device.simulated import RoundOutcome, SimDevice
from fedge.client_sim.device.trainers import KerasTrainer, TfliteTrainer, Trainer, TrainerPool
from fedge.client_sim.fleet.backend import DeviceCounters, Scores
from fedge.converters.targets.training_optimizer import TrainingOptimizer
from fedge.task.examples import DeviceExamples, Examples
from fedge.task.objective import Objective
from fedge.wire.update_codec import Weights
from fedge.wire.weight_spec import ModelSpec


@dataclass(frozen=True)
class TrainingRuntime:
    """What a host needs to train the model, by value: the bundle's training
    artifact (and, for the Keras runtime, its Keras model) as bytes under
    their paths in the bundle, so hosts need no shared filesystem."""

    runtime: str  # tflite | keras
    spec: ModelSpec
    objective: Objective
    training: dict[str, Any]  # the manifest's tflite training record
    files: dict[str, bytes] = field(repr=False)
    keras_entry: str | None = None

    @classmethod
    def of_bundle(
        cls, bundle: Path, manifest: Manifest, objective: Objective, runtime: str
    ) -> TrainingRuntime:
        training = dict(manifest.artifact("tflite")["training"])
        paths = [str(training["path"])]
        keras_entry = None
        if runtime == "keras":
            keras_entry = str(manifest.artifact("keras")["entry"])
            paths.append(keras_entry)
        files: dict[str, bytes] = {}
        for relative in paths:
            files.update(_files_under(bundle, relative))
        return cls(runtime, manifest.weights, objective, training, files, keras_entry)

    def trainer_pool(self, size: int) -> TrainerPool:
        """``size`` runtimes, loaded from a temporary copy of the files that
        is gone when this returns (the runtimes have read what they need)."""
        with tempfile.TemporaryDirectory(prefix="fedge-host-") as folder:
            root = Path(folder)
            for relative, data in self.files.items():
                path = root / relative
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            return TrainerPool(self._factory(root), size)

    def _factory(self, root: Path) -> Callable[[], Trainer]:
        if self.runtime == "keras":
            assert self.keras_entry is not None  # of_bundle sets it for keras
            return lambda: self._keras_trainer(root / str(self.keras_entry))
        path = root / str(self.training["path"])
        optimizer = TrainingOptimizer.from_record(self.training)
        return lambda: TfliteTrainer(path, self.spec, optimizer)

    def _keras_trainer(self, entry: Path) -> Trainer:
        import tensorflow as tf

        from fedge.converters.targets.training_loss import TrainingLoss

        model = tf.keras.models.load_model(entry, compile=False)
        loss = TrainingLoss.from_record(self.training)
        return KerasTrainer(model, loss.keras(), loss.optimizer)


def _files_under(bundle: Path, relative: str) -> dict[str, bytes]:
    """The file at ``relative`` in the bundle, or every file under it."""
    path = bundle / relative
    if path.is_file():
        return {relative: path.read_bytes()}
    return {
        str(p.relative_to(bundle)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


@dataclass(frozen=True)
class HostedDevice:
    """One device as its host receives it."""

    index: int
    data: DeviceExamples
    profile: DeviceProfile


@dataclass(frozen=True)
class HostConfig:
    url: str  # the server, as the host's machine reaches it
    seed: int  # the fleet's
    platform: str  # what the devices enrol as (sim-tflite, say)
    threads: int  # devices stepping at once in this host
    local_state: frozenset[str] = frozenset()  # weights each device keeps its own of


@dataclass(frozen=True)
class HostStep:
    """One pass of the host's devices at the open round."""

    outcomes: list[RoundOutcome]
    counters: DeviceCounters  # the host's devices' totals since it started


class DeviceHost:
    """Builds its devices and enrols them with the server; then steps them,
    offers them global models and reports their scores when asked."""

    def __init__(
        self, config: HostConfig, runtime: TrainingRuntime, devices: list[HostedDevice]
    ) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max(1, config.threads))
        trainers = runtime.trainer_pool(max(1, min(config.threads, len(devices))))
        # The devices take turns on the host's threads: they share its keep-alive connections.
        self._session = fleet_connections(config.threads + 4, config.url)
        self._devices: dict[int, SimDevice] = {}
        for hosted in devices:
            # Seeds as in the thread backend: a device behaves the same on either.
            transport = device_transport(self._session, config.url)
            client = FedgeClient(transport, seed=config.seed + hosted.index)
            self._devices[hosted.index] = SimDevice(
                hosted.index,
                hosted.data,
                trainers,
                client,
                hosted.profile,
                config.seed,
                runtime.objective,
                local_state=config.local_state,
            )
        self._platform = config.platform

    def enrol(self) -> int:
        """Every device enrols (in index order); returns how many."""
        for index in sorted(self._devices):
            self._devices[index].client.enrol(platform=self._platform)
        return len(self._devices)

    def step(self, order: list[int], round_id: int | None) -> HostStep:
        """Each device in ``order`` tries once to take part in the open round."""
        outcomes = list(self._pool.map(lambda i: self._devices[i].step(round_id), order))
        return HostStep(outcomes, self.counters())

    def counters(self) -> DeviceCounters:
        devices = self._devices.values()
        return DeviceCounters(
            bytes_up=sum(d.client.bytes_up for d in devices),
            bytes_down=sum(d.client.bytes_down for d in devices),
            retries=sum(d.client.retries for d in devices),
            crashes=sum(d.stats.crashes for d in devices),
        )

    def offer_global(self, weights: Weights) -> dict[int, Scores]:
        """A global model reaches every device (each adopts it if no worse
        on its own held-out data): each one's scores on that data."""
        indices = sorted(self._devices)
        scores = self._pool.map(lambda i: self._devices[i].offer_global(weights), indices)
        return dict(zip(indices, scores, strict=True))

    def personal_scores(self, test: Examples) -> dict[int, tuple[Scores, Scores]]:
        """Each device's personalised model on its own held-out data and on ``test``."""
        indices = sorted(self._devices)
        scores = self._pool.map(lambda i: self._devices[i].personal_scores(test), indices)
        return dict(zip(indices, scores, strict=True))

    def close(self) -> None:
        """Close the devices' connections and the host's threads."""
        for device in self._devices.values():
            device.client.transport.close()
        self._session.close()
        self._pool.shutdown(wait=True)
