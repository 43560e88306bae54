"""HTTP ingest of model updates: the real ``fedge serve`` process on
loopback, concurrent uploaders, and the server's memory as updates pile up
in one round.

    .venv/bin/python -m bench.server_ingest_bench [--updates 1000] [--params 250000]
        [--uploaders 8] [--repeat 1] [--baseline REV] [--fedge PATH]

Prints, per run, the ingest rate (updates/s and MB/s of update bodies
accepted, each acknowledged only once durable), upload latency p50/p99,
the server's CPU time per update, and its RSS growth from 10 to N updates
in one round relative to the model size (streaming aggregation keeps it
O(model)); with ``--repeat`` the medians too. ``--baseline REV`` also runs
the server of commit REV (a temporary ``git worktree`` of it, on this
virtual environment), alternating with this tree's, so that before and
after are measured side by side in one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import requests
from rich.console import Console
from rich.table import Table

from fedge.wire.update_codec import Update, UpdateMeta, encode_update
from tests.helpers.live_server import FEDGE, running

ROOT = Path(__file__).resolve().parents[1]
# The folders pyproject's package-dir maps under fedge.
MAPPED = ("server", "client_sim", "converters", "web")


@dataclass(frozen=True)
class Run:
    updates_s: float
    mb_s: float
    p50_ms: float
    p99_ms: float
    cpu_ms: float  # the server's CPU time (user + system) per update
    rss_10: float  # MiB
    rss_n: float
    growth: float  # x model size


def build_model(path: Path, params: int) -> tuple[int, int]:
    """A one-layer Keras model with about ``params`` weights (dense/kernel, dense/bias)."""
    import tensorflow as tf

    width = 1000
    fan_in = max(1, params // width)
    inputs = tf.keras.Input((fan_in,), name="x")
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(width, name="dense")(inputs))
    model.save(path)
    return fan_in, width


@contextmanager
def baseline_fedge(rev: str, work: Path) -> Iterator[Path]:
    """A ``fedge`` command running commit ``rev``'s code: a detached git
    worktree of it, its mapped folders put in place as package-dir would,
    ahead of this tree's editable install on the path."""
    tree = work / "baseline-tree"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(tree), rev],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    try:
        view = work / "baseline-view" / "fedge"
        view.mkdir(parents=True)
        for entry in (tree / "fedge").iterdir():
            (view / entry.name).symlink_to(entry)
        for folder in MAPPED:
            (view / folder).symlink_to(tree / folder)
        script = work / "fedge-baseline"
        script.write_text(
            f"#!/bin/sh\nPYTHONPATH={view.parent} exec {sys.executable} -c "
            '"import sys; from fedge.cli.main import main; sys.exit(main())" "$@"\n'
        )
        script.chmod(0o755)
        yield script
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True
        )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(fedge: Path, work: Path, shape: tuple[int, int], args: argparse.Namespace) -> Run:
    fan_in, width = shape
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
    with tempfile.TemporaryDirectory(prefix="run-", dir=work) as run_dir:
        run = Path(run_dir)
        with running(run / "data", flags, run / "server.log", fedge=fedge) as server:
            session = requests.Session()
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
            # Encoded up front: the uploaders share the 2 cores with the server.
            bodies = [
                encode_update(
                    Update(
                        # A count of its own: the server refuses the same bytes
                        # from two devices (duplicate_content).
                        UpdateMeta(task["round_id"], task["base_checkpoint"], 10 + index),
                        shared,
                    )
                )
                for index, (_, task) in enumerate(devices)
            ]

            def upload(index: int) -> float:
                token, task = devices[index]
                started = time.perf_counter()
                reply = requests.post(
                    f"{server.url}{task['upload_url']}",
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

            for i in range(10):
                upload(i)
            rss_10 = server.rss_bytes()
            cpu_before = cpu_seconds(server.process.pid)
            started = time.perf_counter()
            with ThreadPoolExecutor(args.uploaders) as pool:
                latencies = list(pool.map(upload, range(10, args.updates)))
            wall = time.perf_counter() - started
            cpu = cpu_seconds(server.process.pid) - cpu_before
            rss_n = server.rss_bytes()
    count = len(latencies)
    return Run(
        updates_s=count / wall,
        mb_s=sum(len(bodies[i]) for i in range(10, args.updates)) / wall / 1e6,
        p50_ms=float(np.percentile(latencies, 50)) * 1000,
        p99_ms=float(np.percentile(latencies, 99)) * 1000,
        cpu_ms=cpu / count * 1000,
        rss_10=rss_10 / 2**20,
        rss_n=rss_n / 2**20,
        growth=(rss_n - rss_10) / model_bytes,
    )


def cells(run: Run) -> list[str]:
    return [
        f"{run.updates_s:.1f}",
        f"{run.mb_s:.1f}",
        f"{run.p50_ms:.1f}",
        f"{run.p99_ms:.1f}",
        f"{run.cpu_ms:.2f}",
        f"{run.rss_10:.0f}",
        f"{run.rss_n:.0f}",
        f"{run.growth:.2f}x",
    ]


def median_run(runs: list[Run]) -> Run:
    return Run(*(statistics.median(getattr(r, f) for r in runs) for f in Run.__dataclass_fields__))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=1000)
    parser.add_argument("--params", type=int, default=250_000)
    parser.add_argument("--uploaders", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each server")
    parser.add_argument(
        "--baseline", metavar="REV", help="also run commit REV's server (before/after)"
    )
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
        shape = build_model(work / "model.keras", args.params)
        model_mb = (shape[0] * shape[1] + shape[1]) * 4 / 1e6
        with contextmanager(_servers)(args, work) as servers:
            results: dict[str, list[Run]] = {name: [] for name, _ in servers}
            for attempt in range(args.repeat):
                for name, fedge in servers:
                    console.print(f"run {attempt + 1}/{args.repeat}: {name} ...")
                    results[name].append(measure(fedge, work, shape, args))
    table = Table(
        title=f"fedge serve ingest: {args.updates} updates of {model_mb:.2f} MB,"
        f" {args.uploaders} uploaders, loopback, receipt after fsync"
        f" (load {os.getloadavg()[0]:.1f})"
    )
    table.add_column("server")
    table.add_column("run")
    for column in (
        "updates/s",
        "ingest MB/s",
        "upload p50 ms",
        "upload p99 ms",
        "server CPU ms/update",
        "RSS @10 MiB",
        f"RSS @{args.updates} MiB",
        "growth / model size",
    ):
        table.add_column(column, justify="right")
    for name, runs in results.items():
        for attempt, run in enumerate(runs):
            table.add_row(name, str(attempt + 1), *cells(run))
        if len(runs) > 1:
            table.add_row(name, "median", *cells(median_run(runs)), style="bold")
    console.print(table)
    if args.baseline is not None:
        before, after = (median_run(runs) for runs in results.values())
        console.print(
            f"after / before (medians): {after.updates_s / before.updates_s:.2f}x updates/s, "
            f"p99 {after.p99_ms / before.p99_ms:.2f}x, "
            f"CPU per update {after.cpu_ms / before.cpu_ms:.2f}x"
        )


def _servers(args: argparse.Namespace, work: Path) -> Iterator[list[tuple[str, Path]]]:
    current = ("this tree", args.fedge)
    if args.baseline is None:
        yield [current]
        return
    with baseline_fedge(args.baseline, work) as fedge:
        yield [(f"baseline {args.baseline}", fedge), current]


if __name__ == "__main__":
    main()
