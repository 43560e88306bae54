"""Learning quality of federated training on the reference task.

Central training against fedge's fleet (20 devices, Dirichlet alpha 0.5,
30 rounds, real HTTP and TFLite on-device training), for FedAvg and
FedAdam, side by side in one run:

    .venv/bin/python -m bench.learning_quality [--rounds 30] [--devices 20]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from fedge.client_sim.fleet import FleetConfig, run_fleet
from fedge.train import TrainConfig, train_reference_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--per-round", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--local-epochs", type=int, default=3)
    parser.add_argument("--learning-rate", type=float, default=0.05)
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        central = train_reference_model(Path(tmp) / "central.keras", TrainConfig(), progress=False)
    table = Table(
        title=f"learning quality: {args.devices} devices, alpha {args.alpha}, "
        f"{args.rounds} rounds, {args.per_round} per round, "
        f"{args.local_epochs} local epochs, lr {args.learning_rate}"
    )
    for column in (
        "training",
        "global test acc",
        "gap to central (points)",
        "global acc on device data",
        "personalised acc on device data",
        "median s/round",
    ):
        table.add_column(column, justify="left" if column == "training" else "right")
    table.add_row(
        "central (Keras, Adam, 20 epochs)", f"{central.test_accuracy:.4f}", "0.0", "-", "-", "-"
    )
    for strategy in ("fedavg", "fedadam"):
        console.print(f"running the fleet with {strategy} ...")
        report = run_fleet(
            FleetConfig(
                devices=args.devices,
                per_round=args.per_round,
                rounds=args.rounds,
                alpha=args.alpha,
                local_epochs=args.local_epochs,
                learning_rate=args.learning_rate,
                strategy=strategy,
            )
        )
        final = report.rounds[-1].global_accuracy
        seconds = sorted(r.seconds for r in report.rounds)[len(report.rounds) // 2]
        table.add_row(
            f"fedge fleet, {strategy}",
            f"{final:.4f}",
            f"{(central.test_accuracy - final) * 100:.1f}",
            f"{report.global_accuracy_on_devices:.4f}",
            f"{report.personal_accuracy_on_devices:.4f}",
            f"{seconds:.2f}",
        )
    console.print(table)


if __name__ == "__main__":
    main()
