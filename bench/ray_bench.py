"""Seconds per federated round with the devices in this process's threads
(``--backend thread``) and in actors of a local Ray (``--backend ray``),
side by side in one run: the same fleets, seeds and server settings.

Each fleet is the reference task over real HTTP to the embedded server,
with TFLite on-device training; a round's seconds include the server's
aggregation and the global evaluation (see ``fedge.client_sim.fleet.rounds``).
Setup (building the model, starting the server and, for Ray, the cluster
and its device hosts, enrolling the devices) is reported apart.

    .venv/bin/python -m bench.ray_bench [--rounds 3] [--fleets 10:10,1000:100] [--out FILE]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from fedge.client_sim.fleet.config import FleetConfig
from fedge.client_sim.fleet.ray.cluster import local_cpus
from fedge.client_sim.fleet.run import run_fleet


def _fleets(text: str) -> list[tuple[int, int]]:
    """``"10:10,1000:100"`` -> [(10, 10), (1000, 100)] (devices:per round)."""
    pairs = []
    for item in text.split(","):
        devices, _, per_round = item.partition(":")
        pairs.append((int(devices), int(per_round or devices)))
    return pairs


def measure(backend: str, devices: int, per_round: int, rounds: int, workers: int) -> list[str]:
    config = FleetConfig(
        devices=devices,
        per_round=per_round,
        rounds=rounds,
        seed=0,
        workers=workers,
        min_examples=1,
        public_fraction=0.0,
        # Round 1 opens with the server: let a slow start not abandon it.
        deadline_s=120.0,
        backend=backend,
    )
    started = time.perf_counter()
    report = run_fleet(config)
    total = time.perf_counter() - started
    seconds = [r.seconds for r in report.rounds]
    return [
        backend if backend == "thread" else f"ray (local, {local_cpus()} CPUs)",
        str(devices),
        str(per_round),
        f"{statistics.median(seconds):.2f}",
        f"{max(seconds):.2f}",
        f"{total - sum(seconds):.1f}",
        str(sum(r.participants for r in report.rounds)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fleets", type=_fleets, default=_fleets("10:10,1000:100"))
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("/tmp/ray_bench.txt"))
    args = parser.parse_args()
    console = Console()
    table = Table(
        title=f"seconds per round, thread vs local Ray ({args.rounds} rounds, "
        f"{args.workers} devices at once)"
    )
    for column in (
        "backend",
        "devices",
        "per round",
        "median s/round",
        "max s/round",
        "setup s",
        "updates",
    ):
        table.add_column(column, justify="left" if column == "backend" else "right")
    for devices, per_round in args.fleets:
        for backend in ("thread", "ray"):
            console.print(f"{backend}: {devices} devices, {per_round} per round ...")
            table.add_row(*measure(backend, devices, per_round, args.rounds, args.workers))
    shown = Console(record=True, width=120)
    shown.print(table)
    args.out.write_text(shown.export_text())
    print(f"saved to {args.out}")


if __name__ == "__main__":
    main()
