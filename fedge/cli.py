"""The ``fedge`` command line: one entry point, one subcommand per job."""

from __future__ import annotations

import os
from pathlib import Path

import click

from fedge import __version__
from fedge.errors import FedgeError


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fedge")
def main() -> None:
    """fedge: one Keras model on phones, browsers and Apple devices,
    improved by federated rounds."""
    _quiet_tensorflow()


@main.command()
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("model.keras"),
    show_default=True,
    help="Where to write the trained model (.keras or .h5).",
)
@click.option("--epochs", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option(
    "--learning-rate", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Fixes the data split, the initial weights and the batch order.",
)
def train(out: Path, epochs: int, batch_size: int, learning_rate: float, seed: int) -> None:
    """Train the reference digits CNN centrally and print its test accuracy."""
    from fedge.train import TrainConfig, train_reference_model

    config = TrainConfig(
        epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, seed=seed
    )
    try:
        result = train_reference_model(out, config)
    except FedgeError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"trained on {result.train_examples} digits in {result.seconds:.1f} s; "
        f"saved {result.model_path}"
    )
    click.echo(f"test accuracy: {result.test_accuracy:.4f} ({result.test_examples} digits)")
