"""HTTP ingest of model updates: the real ``fedge serve`` process on
loopback, concurrent uploaders, and the server's memory as updates pile up
in one round.

    .venv/bin/python -m bench.server_ingest_bench [--updates 1000] [--params 250000]
        [--uploaders 8] [--fedge PATH]

Prints the ingest rate (MB/s of update bodies accepted), upload latency
p50/p99, and the server's RSS growth from 10 to N updates in one round
relative to the model size (streaming aggregation keeps it O(model)).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests
from rich.console import Console
from rich.table import Table

from fedge.wire.update_codec import Update, UpdateMeta, encode_update
from tests.helpers.live_server import FEDGE, running


def build_model(path: Path, params: int) -> tuple[int, int]:
    """A one-layer Keras model with about ``params`` weights (dense/kernel, dense/bias)."""
    import tensorflow as tf

    width = 1000
    fan_in = max(1, params // width)
    inputs = tf.keras.Input((fan_in,), name="x")
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(width, name="dense")(inputs))
    model.save(path)
    return fan_in, width


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
    args = parser.parse_args()
    console = Console()
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
        with running(work / "data", flags, work / "server.log", fedge=args.fedge) as server:
            session = requests.Session()
            console.print(f"enrolling {args.updates} devices ...")
            devices = []
            for _ in range(args.updates):
                body = session.post(f"{server.url}/v1/devices", json={}, timeout=30).json()
                token = body["token"]
                task = session.post(
                    f"{server.url}/v1/tasks",
                    json={},
                    timeout=30,
                    headers={"Authorization": f"Bearer {token}"},
                ).json()["task"]
                devices.append((token, task))
            rng = np.random.default_rng(0)
            shared = {
                "dense/kernel": rng.normal(0, 0.01, (fan_in, width)).astype(np.float32),
                "dense/bias": rng.normal(0, 0.01, (width,)).astype(np.float32),
            }

            def upload(index: int) -> float:
                token, task = devices[index]
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
                    f"{server.url}{task['upload_url']}",
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
            rss_10 = server.rss_bytes()
            console.print(
                f"uploading {args.updates - 10} more with {args.uploaders} concurrent uploaders ..."
            )
            started = time.perf_counter()
            with ThreadPoolExecutor(args.uploaders) as pool:
                latencies = list(pool.map(upload, range(10, args.updates)))
            wall = time.perf_counter() - started
            rss_n = server.rss_bytes()
    body_bytes = len(encode_update(Update(UpdateMeta(1, "0" * 64, 1), shared)))
    table = Table(
        title=f"fedge serve ingest: {args.updates} updates of {model_bytes / 1e6:.2f}"
        f" MB, {args.uploaders} uploaders, loopback"
    )
    for column in (
        "ingest MB/s",
        "updates/s",
        "upload p50 ms",
        "upload p99 ms",
        "RSS @10 MiB",
        f"RSS @{args.updates} MiB",
        "growth / model size",
    ):
        table.add_column(column, justify="right")
    table.add_row(
        f"{body_bytes * len(latencies) / wall / 1e6:.1f}",
        f"{len(latencies) / wall:.1f}",
        f"{np.percentile(latencies, 50) * 1000:.1f}",
        f"{np.percentile(latencies, 99) * 1000:.1f}",
        f"{rss_10 / 2**20:.0f}",
        f"{rss_n / 2**20:.0f}",
        f"{(rss_n - rss_10) / model_bytes:.2f}x",
    )
    console.print(table)


if __name__ == "__main__":
    main()
