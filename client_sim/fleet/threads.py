"""The thread backend: a fleet's devices as objects in this process.

The server is a real one: at ``--server URL``, or embedded (the same app
on a background thread, real HTTP on loopback). Devices run concurrently
on a bounded thread pool, sharing its keep-alive connections; the rounds
are :func:`fedge.client_sim.fleet.rounds.run_rounds`'. Between rounds the
devices follow the server's releases, and the fleet cuts one every
``release_every`` rounds (:mod:`fedge.client_sim.fleet.releases`).
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from fedge.client_sim.data.federated_split import FederatedData
from fedge.client_sim.device.client import FedgeClient
from fedge.client_sim.device.keepalive import device_transport, fleet_connections
from fedge.client_sim.device.profiles import DeviceProfile, fleet_profiles
from fedge.client_sim.device.simulated import RoundOutcome, SimDevice
from fedge.client_sim.device.speeds import SpeedModel, with_speeds
from fedge.client_sim.device.trainers import TrainerPool
from fedge.client_sim.fleet.backend import DeviceCounters, Scores
from fedge.client_sim.fleet.config import FleetConfig
from fedge.client_sim.fleet.dispatch import until_full
from fedge.client_sim.fleet.model_source import Say
from fedge.client_sim.fleet.preparation import FleetModel, prepare_model
from fedge.client_sim.fleet.releases import FleetReleases
from fedge.client_sim.fleet.rounds import run_rounds
from fedge.client_sim.report.fleet_report import FleetReport, Progress
from fedge.task.examples import Examples
from fedge.wire.update_codec import Weights


def run_thread_fleet(
    config: FleetConfig, progress: Progress | None = None, say: Say = lambda _: None
) -> FleetReport:
    """Prepare the model and server, split the data, run the rounds here."""
    with prepare_model(config, say) as (model, data):
        config = replace(config, per_round=model.per_round)
        backend = ThreadBackend.start(config, model, data)
        try:
            releases = FleetReleases(model, config, backend.devices, backend.pool)
            return run_rounds(config, model, backend, data.test, data.partition, progress, releases)
        finally:
            backend.close()


class ThreadBackend:
    """The devices (:class:`~fedge.client_sim.device.simulated.SimDevice`),
    enrolled, taking turns on ``config.workers`` threads and as many runtimes."""

    def __init__(
        self, devices: list[SimDevice], pool: ThreadPoolExecutor, session: Any, workers: int
    ) -> None:
        self.devices = devices
        self.pool = pool
        self.workers = workers
        self._session = session

    @classmethod
    def start(
        cls,
        config: FleetConfig,
        model: FleetModel,
        data: FederatedData,
        profiles: list[DeviceProfile] | None = None,
    ) -> ThreadBackend:
        """``profiles``: one per device (default: the config's faults and speeds)."""
        n = len(data.devices)
        profiles = profiles or with_speeds(
            fleet_profiles(n, config.dropout, config.crash, config.faults),
            SpeedModel(config.speed_spread),
            config.seed,
        )
        trainers = TrainerPool(model.trainer, min(config.workers, n))
        # Devices take turns on the worker pool: they share its keep-alive connections.
        session = fleet_connections(config.workers + 4, model.url)
        local_state = model.spec.matching(config.local_state)
        backend = cls([], ThreadPoolExecutor(max_workers=config.workers), session, config.workers)
        try:
            for index in range(n):
                transport = device_transport(session, model.url)
                client = FedgeClient(transport, seed=config.seed + index)
                client.enrol(platform=f"sim-{config.runtime}")
                backend.devices.append(
                    SimDevice(
                        index,
                        data.devices[index],
                        trainers,
                        client,
                        profiles[index],
                        config.seed,
                        model.objective,
                        local_state=local_state,
                    )
                )
        except BaseException:
            backend.close()
            raise
        return backend

    @property
    def size(self) -> int:
        return len(self.devices)

    def step(self, order: list[int], round_id: int | None) -> Iterable[RoundOutcome]:
        # Lazily: the pacing notes each outcome as it comes.
        return until_full(self.pool, lambda i: self.devices[i].step(round_id), order, self.workers)

    def offer_global(self, weights: Weights) -> list[Scores]:
        return [device.offer_global(weights) for device in self.devices]

    def personal_scores(self, test: Examples) -> list[tuple[Scores, Scores]]:
        return [device.personal_scores(test) for device in self.devices]

    def counters(self) -> DeviceCounters:
        return DeviceCounters(
            bytes_up=sum(d.client.bytes_up for d in self.devices),
            bytes_down=sum(d.client.bytes_down for d in self.devices),
            retries=sum(d.client.retries for d in self.devices),
            crashes=sum(d.stats.crashes for d in self.devices),
        )

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        for device in self.devices:
            device.client.transport.close()
        self._session.close()
