"""A secure round against a plain one, over real HTTP: wall time and bytes.

    .venv/bin/python -m bench.secagg_round_time [--devices 10] [--rounds 3]

Two real ``fedge serve`` processes on loopback (the reference digits CNN),
one plain, one with ``--secure-aggregation``; ``--devices`` Python devices
on threads take part in every round with the same synthetic deltas (the
server's work does not depend on how they trained). A round's time runs
from the first device asking for a task to the round closed; the median of
``--rounds`` rounds is printed, with each device's upload bytes.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import requests
from rich.console import Console
from rich.table import Table

from fedge.client_sim.device.client import FedgeClient
from fedge.client_sim.device.secure_round import run_secure_round
from fedge.client_sim.device.transport import HttpTransport
from fedge.wire.update_codec import Update, UpdateMeta, encode_update
from tests.helpers.live_server import running
from tests.server.helpers import settled


def one_round(
    url: str, clients: list[FedgeClient], rng: np.random.Generator
) -> tuple[float, float]:
    started = time.perf_counter()
    tasks = [c.task(idle=True, charging=True, unmetered=True)["task"] for c in clients]
    base = clients[0].checkpoint(tasks[0]["base_checkpoint"]).weights
    before = [c.bytes_up for c in clients]

    def take_part(client: FedgeClient, task: dict[str, Any]) -> None:
        deltas = {n: rng.uniform(-0.01, 0.01, base[n].shape).astype(np.float32) for n in base}
        if "secure_aggregation" in task:
            run_secure_round(client, task, deltas)
        else:
            meta = UpdateMeta(task["round_id"], task["base_checkpoint"], 20)
            client.upload(task["round_id"], encode_update(Update(meta, deltas)))

    threads = [
        threading.Thread(target=take_part, args=ct) for ct in zip(clients, tasks, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    record = settled(lambda p: requests.get(url + p, timeout=30).json(), tasks[0]["round_id"], 120)
    assert record["state"] == "closed", record
    sent = statistics.mean(c.bytes_up - b for c, b in zip(clients, before, strict=True))
    return time.perf_counter() - started, sent


def measure(secure: bool, devices: int, rounds: int, work: Path) -> tuple[float, float]:
    config = work / "server.toml"
    config.write_text("tick_s = 0.05\n[rounds]\nover_selection = 1.0\n")
    args = ["--config", str(config), "--per-round", str(devices), "--deadline", "600"]
    if secure:
        args += ["--secure-aggregation", "--secure-clip", "0.05"]
    with running(work / "data", args, work / "server.log") as server:
        clients = [FedgeClient(HttpTransport(server.url)) for _ in range(devices)]
        for client in clients:
            client.enrol()
        rng = np.random.default_rng(0)
        results = [one_round(server.url, clients, rng) for _ in range(rounds)]
        for client in clients:
            client.transport.close()
    return statistics.median(r[0] for r in results), statistics.median(r[1] for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    table = Table(
        title=f"a round of {args.devices} Python devices over HTTP (median of {args.rounds})"
    )
    for column in ("round", "seconds", "upload KB per device"):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        for name, secure in (("plain", False), ("secure", True)):
            work = Path(tmp) / name
            work.mkdir()
            seconds, sent = measure(secure, args.devices, args.rounds, work)
            table.add_row(name, f"{seconds:.2f}", f"{sent / 1024:.1f}")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
