"""An honest device's latency while another device floods predict (issue 22).

    .venv/bin/python -m bench.abuse_latency [--before PATH/TO/fedge] [--samples 30]

Builds the reference digits CNN as a TFLite bundle, starts the real
``fedge serve`` from it on loopback and measures, one request at a time, an
honest device's 1-row predict, its check-in (``POST /v1/tasks``) and
``/healthz``: first on a quiet server, then while one attacking device sends
256-row batches on 24 connections as fast as it is answered (it ignores
``Retry-After``). ``--before`` runs the same against another installation's
``fedge`` console script (say the main checkout's ``.venv/bin/fedge``), so
the two columns come from the same machine in the same run. The table
prints medians (p50) and p90 in milliseconds, and what the attacker got.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import requests
from rich.console import Console
from rich.table import Table

from bench.predict_bench import build_bundle
from fedge.bundle.manifest import open_bundle
from tests.helpers.live_server import FEDGE, running

ATTACK_CONNECTIONS = 24
ATTACK_ROWS = 256


@dataclass
class Attack:
    """What the flooding device got, by status."""

    statuses: Counter[int] = field(default_factory=Counter)
    seconds: float = 0.0


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def enrol(url: str) -> str:
    reply = requests.post(f"{url}/v1/devices", json={"platform": "bench"}, timeout=30)
    reply.raise_for_status()
    token: str = reply.json()["token"]
    return token


def predict_body(input_name: str, shape: tuple[int, ...], rows: int) -> bytes:
    import json

    batch = np.random.default_rng(rows).random((rows, *shape), dtype=np.float32).round(4)
    return json.dumps({"inputs": {input_name: batch.tolist()}}).encode()


def p50_p90(seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    return f"{statistics.median(ms):.1f} / {ms[int(0.9 * (len(ms) - 1))]:.1f}"


def measure(calls: dict[str, Callable[[], int]], samples: int) -> dict[str, list[float]]:
    """Each call ``samples`` times, interleaved; a call returns its HTTP status."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(samples):
        for name, call in calls.items():
            started = time.perf_counter()
            status = call()
            times[name].append(time.perf_counter() - started)
            if status != 200:
                raise RuntimeError(f"the honest device's {name} got HTTP {status}")
    return times


def run_server(fedge: Path, bundle: Path, work: Path, samples: int) -> dict[str, str]:
    manifest = open_bundle(bundle).manifest
    spec = manifest.inputs[0]
    shape = tuple(1 if d is None else int(d) for d in spec.shape[1:])
    with running(work / "data", ["--model", str(bundle)], work / "server.log", fedge=fedge) as live:
        name = requests.get(f"{live.url}/v1/models", timeout=30).json()["models"][0]["name"]
        url = f"{live.url}/v1/models/{name}/predict"
        honest = requests.Session()
        honest_headers = auth(enrol(live.url))
        one_row = predict_body(spec.name, shape, 1)
        calls: dict[str, Callable[[], int]] = {
            "predict (1 row)": lambda: (
                honest.post(url, data=one_row, headers=honest_headers).status_code
            ),
            "check-in (POST /v1/tasks)": lambda: (
                honest.post(f"{live.url}/v1/tasks", json={}, headers=honest_headers).status_code
            ),
            "/healthz": lambda: honest.get(f"{live.url}/healthz").status_code,
        }
        measure(calls, 3)  # warm-up: TensorFlow and the model load in the server
        quiet = measure(calls, samples)

        attack, stop = Attack(), threading.Event()
        attacker_headers = auth(enrol(live.url))
        batch = predict_body(spec.name, shape, ATTACK_ROWS)

        def flood() -> None:
            with requests.Session() as session:
                while not stop.is_set():
                    status = session.post(url, data=batch, headers=attacker_headers).status_code
                    attack.statuses[status] += 1

        with ThreadPoolExecutor(ATTACK_CONNECTIONS) as pool:
            started = time.perf_counter()
            floods = [pool.submit(flood) for _ in range(ATTACK_CONNECTIONS)]
            try:
                time.sleep(1.0)
                flooded = measure(calls, samples)
            finally:
                stop.set()
                for future in floods:
                    future.result()
            attack.seconds = time.perf_counter() - started
        honest.close()
    row = {f"{name}, quiet": p50_p90(quiet[name]) for name in calls}
    row |= {f"{name}, flooded": p50_p90(flooded[name]) for name in calls}
    answered = ", ".join(f"{n} x{status}" for status, n in sorted(attack.statuses.items()))
    row["attacker's requests"] = f"{answered} in {attack.seconds:.0f} s"
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="another installation's fedge script")
    parser.add_argument("--samples", type=int, default=30)
    args = parser.parse_args()
    servers = {"this checkout": FEDGE}
    if args.before is not None:
        servers = {f"before ({args.before})": args.before, **servers}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bundle = build_bundle(work)
        results: dict[str, dict[str, str]] = {}
        for label, fedge in servers.items():
            root = work / str(len(results))
            root.mkdir()
            results[label] = run_server(fedge, bundle, root, args.samples)
    table = Table(title="An honest device during a predict flood: p50 / p90 ms")
    table.add_column("measure")
    for label in results:
        table.add_column(label)
    for key in next(iter(results.values())):
        table.add_row(key, *(result[key] for result in results.values()))
    Console().print(table)


if __name__ == "__main__":
    main()
