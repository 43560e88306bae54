"""The driver's handle on a fleet's device hosts, which run as Ray actors.

Device ``i`` of ``n`` lives on host ``i % hosts`` (a
:class:`~fedge.client_sim.fleet.ray.device_host.DeviceHost` actor, named
``fedge-sim-<run>-host-<k>`` so that an operator, or a test, can find it).
Each call goes to every live host at once and is gathered.

A host whose process dies (``ray.kill``, a lost node, an out-of-memory
kill) is a crash of every device on it: they report ``crashed`` for the
pass that was running, and are out of the fleet from then on (their state
was in that process). Whatever they had uploaded before stays on the
server, which counts each device at most once per round; the fleet does
not resend anything for them.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from typing import Any

from fedge.client_sim.device.profiles import DeviceProfile
from fedge.client_sim.device.simulated import RoundOutcome
from fedge.client_sim.fleet.backend import DeviceCounters, Scores
from fedge.client_sim.fleet.ray.cluster import Cluster, require_ray
from fedge.client_sim.fleet.ray.device_host import (
    DeviceHost,
    HostConfig,
    HostedDevice,
    HostStep,
    TrainingRuntime,
)
from fedge.errors import FedgeError
from fedge.task.examples import DeviceExamples, Examples
from fedge.wire.update_codec import Weights

CRASHED = "crashed"


class HostStartError(FedgeError):
    """The device hosts did not come up on the cluster."""


def host_name(run: str, host: int) -> str:
    return f"fedge-sim-{run}-host-{host}"


@dataclass(frozen=True)
class HostPlan:
    """How many hosts, and what each asks of the cluster."""

    hosts: int
    cpus_per_host: float
    threads_per_host: int

    @classmethod
    def of(cls, devices: int, cluster: Cluster, hosts: int | None, workers: int) -> HostPlan:
        """Default: one host per CPU of the cluster. ``workers`` devices step
        at once over all hosts, as in the thread backend."""
        count = max(1, min(devices, hosts or int(cluster.cpus)))
        return cls(
            hosts=count,
            # More hosts than CPUs share them (a host mostly waits on HTTP).
            cpus_per_host=min(1.0, cluster.cpus / count),
            threads_per_host=max(1, math.ceil(workers / count)),
        )


@dataclass
class _Host:
    name: str
    actor: Any
    devices: list[int]
    counters: DeviceCounters = field(default_factory=DeviceCounters)
    alive: bool = True


class RayHosts:
    """The fleet's hosts, seen from the driver: the Ray backend's
    :class:`~fedge.client_sim.fleet.backend.DeviceBackend`."""

    def __init__(self, hosts: list[_Host], devices: int) -> None:
        self._hosts = hosts
        self._size = devices
        self.lost: list[int] = []  # devices whose host died

    @property
    def size(self) -> int:
        return self._size

    @classmethod
    def start(
        cls,
        plan: HostPlan,
        config: HostConfig,
        runtime: TrainingRuntime,
        data: tuple[DeviceExamples, ...],
        profiles: list[DeviceProfile],
    ) -> RayHosts:
        """Start the hosts (each builds its devices) and enrol every device."""
        ray = require_ray()
        run = uuid.uuid4().hex[:8]
        remote = ray.remote(DeviceHost)
        shared_runtime = ray.put(runtime)
        hosts = []
        for k in range(plan.hosts):
            indices = list(range(k, len(data), plan.hosts))
            hosted = [HostedDevice(i, data[i], profiles[i]) for i in indices]
            actor = remote.options(
                name=host_name(run, k), num_cpus=plan.cpus_per_host, max_restarts=0
            ).remote(config, shared_runtime, hosted)
            hosts.append(_Host(host_name(run, k), actor, indices))
        fleet = cls(hosts, len(data))
        try:
            # A host that cannot build its devices or reach the server fails here.
            ray.get([host.actor.enrol.remote() for host in hosts])
        except BaseException as exc:
            fleet.close()
            if isinstance(exc, ray.exceptions.RayError):
                raise HostStartError(
                    f"the device hosts could not start, or not enrol with the server at "
                    f"{config.url} (the cluster's machines must reach it): {exc}"
                ) from exc
            raise
        return fleet

    def step(self, order: list[int], round_id: int | None) -> list[RoundOutcome]:
        """Every live device, in ``order`` within its host, tries once to take
        part in round ``round_id``; the devices of a host that dies crash."""
        host_of = {i: k for k, host in enumerate(self._hosts) for i in host.devices}
        orders: list[list[int]] = [[] for _ in self._hosts]
        for index in order:
            orders[host_of[index]].append(index)
        called = {
            k: (orders[k], round_id)
            for k, host in enumerate(self._hosts)
            if host.alive and orders[k]
        }
        steps: dict[int, HostStep] = self._call("step", called)
        outcomes: list[RoundOutcome] = []
        for k, host in enumerate(self._hosts):
            if k in steps:
                host.counters = steps[k].counters
                outcomes.extend(steps[k].outcomes)
            elif k in called:  # it died during this pass
                outcomes.extend(
                    RoundOutcome(i, CRASHED, f"its host {host.name} died") for i in orders[k]
                )
        return outcomes

    def offer_global(self, weights: Weights) -> list[Scores]:
        """The live devices' scores of ``weights`` on their held-out data (each
        adopts it if no worse), in device order."""
        shared = require_ray().put(weights)
        return _merged(self._call("offer_global", self._every((shared,))))

    def personal_scores(self, test: Examples) -> list[tuple[Scores, Scores]]:
        shared = require_ray().put(test)
        return _merged(self._call("personal_scores", self._every((shared,))))

    def counters(self) -> DeviceCounters:
        """Totals over every host (a dead host's as it last reported them);
        a device lost with its host is a crash."""
        rows = [host.counters for host in self._hosts]
        return DeviceCounters(
            bytes_up=sum(c.bytes_up for c in rows),
            bytes_down=sum(c.bytes_down for c in rows),
            retries=sum(c.retries for c in rows),
            crashes=sum(c.crashes for c in rows) + len(self.lost),
        )

    def close(self) -> None:
        """Close the live hosts' connections, then end every host's process."""
        ray = require_ray()
        self._call("close", self._every(()))
        for host in self._hosts:
            ray.kill(host.actor, no_restart=True)

    def _every(self, args: tuple[Any, ...]) -> dict[int, tuple[Any, ...]]:
        return {k: args for k, host in enumerate(self._hosts) if host.alive}

    def _call(self, method: str, args: dict[int, tuple[Any, ...]]) -> dict[int, Any]:
        """``method(*args[k])`` on host ``k``, for each ``k`` at once; the
        results of the hosts that answered (one that died is marked so)."""
        ray = require_ray()
        pending = {k: getattr(self._hosts[k].actor, method).remote(*a) for k, a in args.items()}
        results = {}
        for k, ref in pending.items():
            try:
                results[k] = ray.get(ref)
            except ray.exceptions.RayActorError:
                self._mark_dead(k)
        return results

    def _mark_dead(self, k: int) -> None:
        host = self._hosts[k]
        if host.alive:
            host.alive = False
            self.lost.extend(host.devices)


def _merged(results: dict[int, dict[int, Any]]) -> list[Any]:
    """The hosts' answers per device, in device order (means over devices
    then add up in the thread backend's order)."""
    merged: dict[int, Any] = {}
    for part in results.values():
        merged.update(part)
    return [merged[index] for index in sorted(merged)]
