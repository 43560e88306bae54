"""Where a fleet's devices live: the one interface the round loop
(:mod:`fedge.client_sim.fleet.rounds`) drives.

Two backends implement it: the devices as objects in this process, stepped
on a thread pool (:class:`fedge.client_sim.fleet.threads.ThreadBackend`),
and the devices in Ray actors anywhere in a cluster
(:class:`fedge.client_sim.fleet.ray.hosts.RayHosts`). Each creates and
enrols its devices when it starts; from then on the loop only names devices
by index, so the same rounds, pacing, scores and report come out of either.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from fedge.client_sim.device.simulated import RoundOutcome
from fedge.task.examples import Examples
from fedge.wire.update_codec import Weights

Scores = dict[str, float]


@dataclass(frozen=True)
class DeviceCounters:
    """Totals over a fleet's devices since they started."""

    bytes_up: int = 0
    bytes_down: int = 0
    retries: int = 0
    # Uploads cut off before their receipt (and sent again), and devices
    # lost with the process that held them.
    crashes: int = 0


class DeviceBackend(Protocol):
    """A started fleet of ``size`` enrolled devices, indexed ``0..size-1``."""

    @property
    def size(self) -> int: ...

    def step(self, order: list[int], round_id: int | None) -> Iterable[RoundOutcome]:
        """Each device in ``order`` tries once to take part in round
        ``round_id`` (None: whichever its task names, as in asynchronous
        aggregation): one outcome for each (not necessarily in that order)."""
        ...

    def offer_global(self, weights: Weights) -> list[Scores]:
        """``weights`` reach every live device, which adopts them if no worse
        on its own held-out data: each one's scores there, in device order."""
        ...

    def personal_scores(self, test: Examples) -> list[tuple[Scores, Scores]]:
        """Each live device's personalised model on its own held-out data and
        on ``test``, in device order."""
        ...

    def counters(self) -> DeviceCounters: ...

    def close(self) -> None:
        """Release the devices (their connections, threads, processes)."""
        ...
