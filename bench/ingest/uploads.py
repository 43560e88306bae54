"""One measured run: enrol devices on the servers (in turn), upload 10
updates, then the rest with concurrent uploaders, timed; the servers' CPU
and RSS, and the database's counters (:mod:`.db_costs`), around it."""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import requests

from bench.ingest.db_costs import DbCosts, Probe, per_update
from bench.ingest.servers import aggregator_index, cpu_seconds
from fedge.wire.update_codec import Update, UpdateMeta, encode_update
from tests.helpers.live_server import LiveServer

WARM_UP = 10  # updates before the timed ones, and the first RSS reading

Weights = dict[str, np.ndarray[Any, Any]]


@dataclass(frozen=True)
class Run:
    updates_s: float
    mb_s: float
    p50_ms: float
    p99_ms: float
    cpu_ms: float  # the server processes' CPU time (user + system) per update
    aggregator_cpu_ms: float  # the aggregator's share of it (nan: none found)
    rss_10: float  # MiB, summed over the server processes
    rss_n: float
    growth: float  # x model size
    db: DbCosts  # the database's costs per update


def median_run(runs: list[Run]) -> Run:
    """The median of every figure (of the runs that measured it)."""

    def median(values: list[float | None]) -> float | None:
        known = [value for value in values if value is not None]
        return statistics.median(known) if known else None

    db = DbCosts(**{f.name: median([getattr(r.db, f.name) for r in runs]) for f in fields(DbCosts)})
    figures = {
        f.name: statistics.median(getattr(r, f.name) for r in runs)
        for f in fields(Run)
        if f.name != "db"
    }
    return Run(**figures, db=db)


def measure(
    servers: list[LiveServer],
    probe: Probe,
    updates: int,
    uploaders: int,
    weights: Weights,
    model_bytes: int,
) -> Run:
    session = requests.Session()
    devices = []
    for index in range(updates):
        url = servers[index % len(servers)].url
        token = session.post(f"{url}/v1/devices", json={}, timeout=30).json()["token"]
        task = session.post(
            f"{url}/v1/tasks", json={}, timeout=30, headers={"Authorization": f"Bearer {token}"}
        ).json()["task"]
        devices.append((url, token, task))
    # Encoded up front: the uploaders share the machine's cores with the servers.
    bodies = [
        encode_update(
            Update(
                # A count of its own: the server refuses the same bytes
                # from two devices (duplicate_content).
                UpdateMeta(task["round_id"], task["base_checkpoint"], 10 + index),
                weights,
            )
        )
        for index, (_, _, task) in enumerate(devices)
    ]

    def upload(index: int) -> float:
        url, token, task = devices[index]
        started = time.perf_counter()
        reply = requests.post(
            f"{url}{task['upload_url']}",
            data=bodies[index],
            timeout=120,
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/octet-stream",
            },
        )
        elapsed = time.perf_counter() - started
        if reply.status_code != 201:
            raise RuntimeError(f"upload {index}: {reply.status_code} {reply.text}")
        return elapsed

    for index in range(WARM_UP):
        upload(index)
    rss_10 = sum(server.rss_bytes() for server in servers)
    db_before = probe.read()
    cpu_before = [cpu_seconds(server) for server in servers]
    started = time.perf_counter()
    with ThreadPoolExecutor(uploaders) as pool:
        latencies = list(pool.map(upload, range(WARM_UP, updates)))
    wall = time.perf_counter() - started
    cpu = [cpu_seconds(server) - before for server, before in zip(servers, cpu_before, strict=True)]
    rss_n = sum(server.rss_bytes() for server in servers)
    count = len(latencies)
    db = per_update(db_before, probe.read(), count)
    aggregator = aggregator_index(servers)
    return Run(
        updates_s=count / wall,
        mb_s=sum(len(body) for body in bodies[WARM_UP:]) / wall / 1e6,
        p50_ms=float(np.percentile(latencies, 50)) * 1000,
        p99_ms=float(np.percentile(latencies, 99)) * 1000,
        cpu_ms=sum(cpu) / count * 1000,
        aggregator_cpu_ms=float("nan") if aggregator is None else cpu[aggregator] / count * 1000,
        rss_10=rss_10 / 2**20,
        rss_n=rss_n / 2**20,
        growth=(rss_n - rss_10) / model_bytes,
        db=db,
    )
