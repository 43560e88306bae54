"""Seconds per federated round: fedge (real HTTP, TFLite on-device
training) next to TFF's in-process simulation of the same rounds (same
devices, same batches), measured in one run; then a large fleet's memory
and seconds per round.

    .venv/bin/python -m bench.simulate_bench [--rounds 5] [--large-devices 1000]
"""

from __future__ import annotations

import argparse
import resource
import statistics

import tensorflow as tf
from rich.console import Console
from rich.table import Table

from fedge.client_sim.data.partition import PartitionConfig, partition
from fedge.client_sim.fleet.config import FleetConfig
from fedge.client_sim.fleet.run import run_fleet
from fedge.client_sim.tff.engine import run_tff_fedavg
from fedge.reference.data import load_task
from fedge.reference.model import build_reference_model
from fedge.wire.weight_spec import ModelSpec


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--large-devices", type=int, default=1000)
    parser.add_argument("--large-per-round", type=int, default=100)
    parser.add_argument("--large-rounds", type=int, default=3)
    args = parser.parse_args()
    console = Console()
    seed, epochs, batch, lr = 0, 1, 16, 0.05

    console.print(f"fedge: {args.rounds} rounds of {args.devices} devices over HTTP ...")
    ours = run_fleet(
        FleetConfig(
            devices=args.devices,
            per_round=args.devices,
            rounds=args.rounds,
            seed=seed,
            local_epochs=epochs,
            batch_size=batch,
            learning_rate=lr,
            workers=args.devices,
            public_fraction=0.0,  # TFF starts from the same seeded CNN
        )
    )
    task = load_task(seed=seed)
    parts = partition(task.train.y, PartitionConfig(num_devices=args.devices, seed=seed))
    tf.keras.utils.set_random_seed(seed)
    model = build_reference_model()
    initial = ModelSpec.from_keras(model).named(model.get_weights())
    console.print("TFF: the same rounds in-process ...")
    tff_run = run_tff_fedavg(
        initial,
        lambda d: parts.device_data(d, task.train).train,
        ours.selected,
        seed,
        epochs,
        batch,
        lr,
    )
    ours_s = statistics.median(r.seconds for r in ours.rounds)
    tff_s = statistics.median(tff_run.round_seconds)
    table = Table(title=f"seconds per round, {args.devices} devices, reference CNN")
    for column in ("engine", "median s/round", "build s", "vs TFF"):
        table.add_column(column, justify="left" if column == "engine" else "right")
    table.add_row(
        "fedge: HTTP + TFLite training (incl. evaluation)",
        f"{ours_s:.3f}",
        "-",
        f"{tff_s / ours_s:.2f}x",
    )
    table.add_row(
        "TFF build_weighted_fed_avg, in-process",
        f"{tff_s:.3f}",
        f"{tff_run.build_seconds:.1f}",
        "1.00x",
    )
    console.print(table)

    console.print(
        f"large fleet: {args.large_devices} devices, {args.large_per_round} per round ..."
    )
    before = peak_rss_mib()
    large = run_fleet(
        FleetConfig(
            devices=args.large_devices,
            per_round=args.large_per_round,
            rounds=args.large_rounds,
            seed=seed,
            workers=8,
            over_selection=1.0,
            min_examples=1,
            public_fraction=0.0,
        )
    )
    big = Table(title="large fleet (devices, server and TFLite runtimes in one process)")
    for column in ("devices", "per round", "median s/round", "peak RSS MiB", "peak RSS before MiB"):
        big.add_column(column, justify="right")
    big.add_row(
        str(args.large_devices),
        str(args.large_per_round),
        f"{statistics.median(r.seconds for r in large.rounds):.2f}",
        f"{peak_rss_mib():.0f}",
        f"{before:.0f}",
    )
    console.print(big)


if __name__ == "__main__":
    main()
