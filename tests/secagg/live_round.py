"""A real ``fedge serve --secure-aggregation`` with enrolled Python devices
that hold their tasks: the set-up the secure-round tests over HTTP share."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import requests

from fedge.client_sim.device.client import FedgeClient
from fedge.client_sim.device.secure_round import run_secure_round
from fedge.client_sim.device.transport import HttpTransport
from tests.helpers.live_server import LiveServer, running
from tests.server.helpers import settled

Weights = dict[str, npt.NDArray[Any]]


@dataclass
class SecureRound:
    server: LiveServer
    clients: list[FedgeClient]
    tasks: list[dict[str, Any]]
    base: Weights  # the round's base checkpoint
    names: list[str]  # the weights the round sums

    def run(self, deltas: Sequence[Weights]) -> list[threading.Thread]:
        """Each Python device plays the round with its delta, in a thread
        (started; ``join`` them)."""
        threads = [
            threading.Thread(target=run_secure_round, args=(c, t, d))
            for c, t, d in zip(self.clients, self.tasks, deltas, strict=False)
        ]
        for thread in threads:
            thread.start()
        return threads

    def closed(self) -> dict[str, Any]:
        """The round's record once it has settled."""
        server = self.server
        return settled(
            lambda p: requests.get(server.url + p, timeout=30).json(), self.tasks[0]["round_id"]
        )


def join(threads: Sequence[threading.Thread], timeout_s: float = 60.0) -> None:
    for thread in threads:
        thread.join(timeout=timeout_s)


@contextmanager
def secure_round(
    tmp_path: Path, per_round: int, python_devices: int, args: Sequence[str]
) -> Iterator[SecureRound]:
    """A secure server whose rounds need ``per_round`` devices (closing at
    every one of them, 10 min deadline), with ``python_devices`` devices
    enrolled and given their task; ``args`` adds server options."""
    config = tmp_path / "server.toml"
    config.write_text("tick_s = 0.05\n[rounds]\nover_selection = 1.0\n")
    command = ["--config", str(config), "--per-round", str(per_round), "--rounds-min", "3"]
    command += ["--deadline", "600", "--secure-aggregation", *args]
    with running(tmp_path / "data", command, tmp_path / "server.log") as server:
        clients = [FedgeClient(HttpTransport(server.url)) for _ in range(python_devices)]
        try:
            for client in clients:
                client.enrol()
            tasks = [c.task(idle=True, charging=True, unmetered=True)["task"] for c in clients]
            base = clients[0].checkpoint(tasks[0]["base_checkpoint"]).weights
            names = list(tasks[0]["secure_aggregation"]["weights"])
            yield SecureRound(server, clients, tasks, base, names)
        finally:
            for client in clients:
                client.transport.close()


def uniform_deltas(setup: SecureRound, count: int, bound: float, seed: int) -> list[Weights]:
    """``count`` deltas, each weight uniform in [-bound, bound)."""
    rng = np.random.default_rng(seed)
    return [
        {n: rng.uniform(-bound, bound, setup.base[n].shape).astype(np.float32) for n in setup.names}
        for _ in range(count)
    ]
