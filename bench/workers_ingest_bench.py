"""HTTP ingest of model updates: the real ``fedge serve`` process on
loopback, concurrent uploaders, and the server's memory as updates pile up
in one round.

    .venv/bin/python -m bench.server_ingest_bench [--updates 1000] [--params 250000]
        [--uploaders 8] [--fedge PATH] [--workers 1,2 [--database URL]]

Prints the ingest rate (MB/s of update bodies accepted), upload latency
p50/p99, the servers' CPU seconds per update, and the server's RSS growth
from 10 to N updates in one round relative to the model size (streaming
aggregation keeps it O(model)).

``--workers 1,2``: after today's SQLite server, the same uploads to 1, 2
... ``fedge serve --database`` workers on one PostgreSQL database and data
directory (uploads spread over them in turn; the elected aggregator folds
them all), in the same run. ``--database``: a PostgreSQL server's URL on
which the bench may create a database per row (default: a throw-away
cluster, as the tests start, which needs Debian's postgresql package).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import requests
from rich.console import Console
from rich.table import Table

from fedge.wire.update_codec import Update, UpdateMeta, encode_update
from tests.helpers.live_server import FEDGE, LiveServer, running


def build_model(path: Path, params: int) -> tuple[int, int]:
    """A one-layer Keras model with about ``params`` weights (dense/kernel, dense/bias)."""
    import tensorflow as tf

    width = 1000
    fan_in = max(1, params // width)
    inputs = tf.keras.Input((fan_in,), name="x")
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(width, name="dense")(inputs))
    model.save(path)
    return fan_in, width


@dataclass(frozen=True)
class Row:
    name: str
    latencies: list[float]
    wall_s: float
    cpu_s: float  # the server processes' user + system CPU over the timed uploads
    rss_10: int
    rss_n: int


def cpu_seconds(servers: list[LiveServer]) -> float:
    """User + system CPU of the server processes so far (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for server in servers:
        fields = Path(f"/proc/{server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


@contextmanager
def postgres_urls(admin_url: str | None) -> Iterator[Callable[[str], str]]:
    """A maker of fresh database URLs: on ``admin_url``'s server, or on a
    throw-away cluster."""
    if admin_url is not None:
        import psycopg2

        def make(name: str) -> str:
            conn = psycopg2.connect(admin_url)
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
            conn.close()
            base, _, _ = admin_url.rpartition("/")
            return f"{base}/{name}"

        yield make
        return
    from tests.helpers.postgres import started

    with started() as cluster:
        yield cluster.new_database


def measure(
    name: str,
    servers: list[LiveServer],
    updates: int,
    uploaders: int,
    shared: dict[str, np.ndarray[Any, Any]],
    console: Console,
) -> Row:
    session = requests.Session()
    console.print(f"{name}: enrolling {updates} devices ...")
    devices = []
    for index in range(updates):
        url = servers[index % len(servers)].url
        body = session.post(f"{url}/v1/devices", json={}, timeout=30).json()
        token = body["token"]
        task = session.post(
            f"{url}/v1/tasks", json={}, timeout=30, headers={"Authorization": f"Bearer {token}"}
        ).json()["task"]
        devices.append((url, token, task))

    def upload(index: int) -> float:
        url, token, task = devices[index]
        data = encode_update(
            Update(
                # A count of its own: the server refuses the same bytes
                # from two devices (duplicate_content).
                UpdateMeta(task["round_id"], task["base_checkpoint"], 10 + index),
                shared,
            )
        )
        started = time.perf_counter()
        reply = requests.post(
            f"{url}{task['upload_url']}",
            data=data,
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

    for i in range(10):
        upload(i)
    rss_10 = sum(s.rss_bytes() for s in servers)
    console.print(f"{name}: uploading {updates - 10} more with {uploaders} uploaders ...")
    cpu_before = cpu_seconds(servers)
    started = time.perf_counter()
    with ThreadPoolExecutor(uploaders) as pool:
        latencies = list(pool.map(upload, range(10, updates)))
    wall = time.perf_counter() - started
    cpu = cpu_seconds(servers) - cpu_before
    return Row(name, latencies, wall, cpu, rss_10, sum(s.rss_bytes() for s in servers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=1000)
    parser.add_argument("--params", type=int, default=250_000)
    parser.add_argument("--uploaders", type=int, default=8)
    parser.add_argument(
        "--fedge",
        type=Path,
        default=FEDGE,
        help="the fedge console script that serves (another build's, to compare)",
    )
    parser.add_argument(
        "--workers",
        default="",
        help="comma-separated worker counts to run on PostgreSQL after SQLite (1,2)",
    )
    parser.add_argument("--database", help="a PostgreSQL URL to create the bench's databases on")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",") if n.strip()]
    console = Console()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="fedge-ingest-") as tmp:
        work = Path(tmp)
        fan_in, width = build_model(work / "model.keras", args.params)
        model_bytes = (fan_in * width + width) * 4
        flags = [
            "--model",
            str(work / "model.keras"),
            "--rounds-target",
            str(args.updates + 1),
            "--rounds-min",
            "1",
            "--deadline",
            "3600",
        ]
        rng = np.random.default_rng(0)
        shared = {
            "dense/kernel": rng.normal(0, 0.01, (fan_in, width)).astype(np.float32),
            "dense/bias": rng.normal(0, 0.01, (width,)).astype(np.float32),
        }
        with running(work / "data", flags, work / "server.log", fedge=args.fedge) as server:
            rows.append(
                measure(
                    "sqlite, 1 process", [server], args.updates, args.uploaders, shared, console
                )
            )
        with contextlib.ExitStack() as outer:
            make_url = outer.enter_context(postgres_urls(args.database)) if counts else None
            for count in counts:
                assert make_url is not None
                url = make_url(f"bench_{secrets.token_hex(4)}")
                data = work / f"data-pg-{count}"
                with ExitStack() as stack:
                    servers = [
                        stack.enter_context(
                            running(
                                data,
                                [*flags, "--database", url],
                                work / f"pg-{count}-{i}.log",
                                fedge=args.fedge,
                            )
                        )
                        for i in range(count)
                    ]
                    rows.append(
                        measure(
                            f"postgresql, {count} worker{'s' if count > 1 else ''}",
                            servers,
                            args.updates,
                            args.uploaders,
                            shared,
                            console,
                        )
                    )
    body_bytes = len(encode_update(Update(UpdateMeta(1, "0" * 64, 1), shared)))
    table = Table(
        title=f"fedge serve ingest: {args.updates} updates of {model_bytes / 1e6:.2f}"
        f" MB, {args.uploaders} uploaders, loopback, {os.cpu_count()} cores"
    )
    for column in (
        "server",
        "ingest MB/s",
        "updates/s",
        "upload p50 ms",
        "upload p99 ms",
        "server CPU ms / update",
        "RSS @10 MiB",
        f"RSS @{args.updates} MiB",
        "growth / model size",
    ):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            row.name,
            f"{body_bytes * len(row.latencies) / row.wall_s / 1e6:.1f}",
            f"{len(row.latencies) / row.wall_s:.1f}",
            f"{np.percentile(row.latencies, 50) * 1000:.1f}",
            f"{np.percentile(row.latencies, 99) * 1000:.1f}",
            f"{row.cpu_s / len(row.latencies) * 1000:.2f}",
            f"{row.rss_10 / 2**20:.0f}",
            f"{row.rss_n / 2**20:.0f}",
            f"{(row.rss_n - row.rss_10) / model_bytes:.2f}x",
        )
    console.print(table)


if __name__ == "__main__":
    main()
