"""``fedge train``: the reference digits CNN, trained centrally."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from fedge.cli import options
from fedge.errors import FedgeError


@click.command()
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("model.keras"),
    show_default=True,
    help="Where to write the trained model (.keras or .h5).",
)
@click.option("--epochs", type=click.IntRange(min=1), default=20, show_default=True)
@options.batch_size(default=32)
@options.learning_rate(default=1e-3)
@options.seed(help="Fixes the data split, the initial weights and the batch order.")
@options.public_fraction(
    help="Train on this share of the digits' training split (the team's public data); "
    "fedge simulate's devices hold the rest. 0: all of it."
)
def train(out: Path, **settings: Any) -> None:
    """Train the reference digits CNN centrally and print its test accuracy."""
    from fedge.reference.train import TrainConfig, train_reference_model

    config = options.build_record(TrainConfig, settings)
    try:
        result = train_reference_model(out, config)
    except FedgeError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"trained on {result.train_examples} digits in {result.seconds:.1f} s; "
        f"saved {result.model_path}"
    )
    click.echo(f"test accuracy: {result.test_accuracy:.4f} ({result.test_examples} digits)")
