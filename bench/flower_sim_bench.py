"""Seconds per round: Flower's simulation of fedge's reference rounds, next
to fedge's fleet (thread backend) on the same fleets, in one run.

For each fleet size the devices' data is fedge's own split
(:func:`fedge.client_sim.data.fleet_data.reference_data`: the digits over the
devices with label skew and handwriting styles; past 1,000 devices, 1,000
shards shared round-robin), so both simulations train the same examples
on every device. Flower runs in ``.bench-venv`` (``bench/setup_flower.sh``)
as ``bench/flower_simulation.py``: ``run_simulation`` on Ray, FedAvg over
``per round`` sampled clients, the CNN in PyTorch on the CPU, one local
epoch, batch 16, SGD lr 0.05, the server evaluating each new global model.
fedge's column is ``run_fleet`` with its embedded server: every selected
device enrols, asks for a task, downloads the base, trains with TFLite and
uploads over real HTTP; its round too includes aggregation and the global
evaluation. Round 1 (Ray's start for Flower; every device's first check-in
for fedge) is shown apart; the medians are over rounds 2 and later.

    .venv/bin/python -m bench.flower_sim_bench [--rounds 4] [--sizes 10,1000,10000]
        [--no-fedge] [--out /tmp/flower_sim_bench.txt]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from bench.results import emit
from fedge.client_sim.data.fleet_data import reference_data
from fedge.client_sim.fleet.config import FleetConfig
from fedge.client_sim.fleet.run import run_fleet
from fedge.reference.model import INPUT_NAME

REPO_ROOT = Path(__file__).resolve().parent.parent
FLOWER_PYTHON = REPO_ROOT / ".bench-venv" / "bin" / "python"
FLOWER_SCRIPT = REPO_ROOT / "bench" / "flower_simulation.py"
SEED = 0
ALPHA = 0.5
SHARDS = 1000  # the most devices the digits give at least one example each


@dataclass(frozen=True)
class Measured:
    """One engine on one fleet: round 1 and the median of the rest, or why not."""

    round1_s: float | None = None
    rounds_s: tuple[float, ...] = ()
    median_s: float | None = None
    total_s: float | None = None
    note: str = ""


def shards_for(devices: int) -> int | None:
    return SHARDS if devices > SHARDS else None


def write_device_data(devices: int, path: Path) -> int:
    """fedge's split of the reference task as ``bench/flower_simulation.py``
    reads it; returns the number of training examples over all devices."""
    data = reference_data(
        devices, ALPHA, SEED, 1, INPUT_NAME, public_fraction=0.0, shards=shards_for(devices)
    )
    trains = [device.train for device in data.devices]
    sizes = [len(train) for train in trains]
    np.savez(
        path,
        x=np.concatenate([train.x[INPUT_NAME] for train in trains]),
        y=np.concatenate([train.y for train in trains]),
        offsets=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
        test_x=data.test.x[INPUT_NAME],
        test_y=data.test.y,
    )
    return sum(sizes)


def run_flower(data: Path, per_round: int, rounds: int, timeout_s: float) -> Measured:
    if not FLOWER_PYTHON.exists():
        return Measured(note="no .bench-venv: run bench/setup_flower.sh")
    command = [str(FLOWER_PYTHON), str(FLOWER_SCRIPT), str(data)]
    command += ["--per-round", str(per_round), "--rounds", str(rounds)]
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0"}
    env.pop("PYTHONPATH", None)  # nothing of this checkout's venv in Flower's
    try:
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        return Measured(note=f"did not finish in {timeout_s:.0f} s")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return Measured(note=f"failed (exit {done.returncode}): {tail[:120]}")
    report: dict[str, Any] = json.loads(lines[-1])
    seconds: list[float] = report["round_seconds"]
    return Measured(
        round1_s=seconds[0],
        rounds_s=tuple(seconds),
        median_s=report["median_s"],
        total_s=report["total_s"],
        note=f"{report['framework']}, flwr {report['flwr']}, ray {report['ray']}, "
        f"{report['actors']} actors; driver peak RSS {report['driver_peak_rss_mib']:.0f} MiB; "
        f"accuracy {report['accuracy'][-1]:.2f}",
    )


def run_fedge(devices: int, per_round: int, rounds: int, workers: int) -> Measured:
    started = time.perf_counter()
    report = run_fleet(
        FleetConfig(
            devices=devices,
            per_round=per_round,
            rounds=rounds,
            seed=SEED,
            alpha=ALPHA,
            workers=workers,
            min_examples=1,
            public_fraction=0.0,
            data_shards=shards_for(devices),
            deadline_s=120.0,  # round 1 opens with the server: let a slow start not drop it
        )
    )
    seconds = [r.seconds for r in report.rounds]
    accuracy = report.rounds[-1].metrics.get("accuracy", float("nan"))
    return Measured(
        round1_s=seconds[0],
        rounds_s=tuple(seconds),
        median_s=statistics.median(seconds[1:] or seconds),
        total_s=time.perf_counter() - started,
        note=f"TFLite, HTTP, {workers} workers; accuracy {accuracy:.2f}",
    )


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table(rows: list[tuple[str, int, int, Measured]], rounds: int) -> Table:
    out = Table(
        title=f"seconds per round, Flower's simulation vs fedge ({rounds} rounds; "
        "medians over rounds 2..)"
    )
    columns = (
        "engine",
        "devices",
        "per round",
        "round 1 s",
        "median s/round",
        "rounds 2.. s",
        "total s",
        "notes",
    )
    for column in columns:
        out.add_column(
            column, justify="left" if column in ("engine", "rounds 2.. s", "notes") else "right"
        )
    for engine, devices, per_round, measured in rows:
        out.add_row(
            engine,
            f"{devices:,}",
            str(per_round),
            seconds(measured.round1_s),
            seconds(measured.median_s),
            " ".join(f"{s:.2f}" for s in measured.rounds_s[1:]),
            seconds(measured.total_s),
            measured.note,
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,1000,10000", help="comma-separated fleet sizes")
    parser.add_argument("--per-round", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--workers", type=int, default=8, help="fedge's device workers")
    parser.add_argument("--flower-timeout", type=float, default=1800.0, help="seconds per size")
    parser.add_argument("--no-fedge", action="store_true", help="Flower's column only")
    parser.add_argument("--out", type=Path, default=Path("/tmp/flower_sim_bench.txt"))
    args = parser.parse_args()
    console = Console()
    rows: list[tuple[str, int, int, Measured]] = []
    for devices in (int(size) for size in args.sizes.split(",")):
        per_round = min(args.per_round, devices)
        with tempfile.TemporaryDirectory(prefix="fedge-flower-") as tmp:
            data = Path(tmp) / "devices.npz"
            examples = write_device_data(devices, data)
            console.print(f"Flower: {devices:,} clients ({examples:,} examples), {per_round}/round")
            flower = run_flower(data, per_round, args.rounds, args.flower_timeout)
        rows.append(("Flower run_simulation (Ray)", devices, per_round, flower))
        if not args.no_fedge:
            console.print(f"fedge: {devices:,} devices, {per_round}/round ...")
            rows.append(
                (
                    "fedge thread backend",
                    devices,
                    per_round,
                    run_fedge(devices, per_round, args.rounds, args.workers),
                )
            )
    shown = Console(record=True, width=160)
    shown.print(table(rows, args.rounds))
    args.out.write_text(shown.export_text())
    print(f"saved to {args.out}")
    emit_results(rows)


def emit_results(rows: list[tuple[str, int, int, Measured]]) -> None:
    """Each engine's median s/round and round 1 per fleet size, for
    ``bench.report``'s summary (:mod:`bench.results`); none for a run that
    did not finish."""
    for engine, devices, _, measured in rows:
        name = "flower" if engine.startswith("Flower") else "fedge"
        if measured.median_s is not None and measured.round1_s is not None:
            emit(f"{name}_s_round_{devices}", measured.median_s)
            emit(f"{name}_round1_s_{devices}", measured.round1_s)


if __name__ == "__main__":
    main()
