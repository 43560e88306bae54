"""``fedge predict``: batch predictions with one runtime of a bundle."""

from __future__ import annotations

from pathlib import Path

import click

from fedge.errors import FedgeError


class BadInput(click.ClickException):
    """Input the command cannot use (a file's values, an output path): exit 2,
    like a bad argument, without click's usage text."""

    exit_code = 2


def _bundle_id(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from fedge.bundle.hashing import is_sha256

    if value is not None and not is_sha256(value):
        raise click.BadParameter(f"a bundle id is 64 hex digits (a sha256); got {value!r}")
    return value


@click.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("inputs", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--runtime",
    type=click.Choice(["tflite", "tfjs", "coreml", "keras"]),
    default="tflite",
    show_default=True,
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write predictions: .npy, .npz or .csv, in an existing directory.",
)
@click.option(
    "--bundle-id",
    callback=_bundle_id,
    help="The published bundle id (the sha256 of its manifest.json), from a channel you "
    "trust: a bundle whose manifest differs is refused.",
)
def predict(bundle: Path, inputs: Path, runtime: str, out: Path, bundle_id: str | None) -> None:
    """Batch predictions for INPUTS (.npy, .npz or .csv) with a runtime of BUNDLE."""
    from fedge.converters.batch_predict import predict_to_file
    from fedge.converters.errors import BadInputError

    try:
        run = predict_to_file(bundle, runtime, inputs, out, expected_id=bundle_id)
    except BadInputError as exc:
        raise BadInput(f"{exc}\nnothing was written") from exc
    except FedgeError as exc:
        raise click.ClickException(f"{exc}\nnothing was written") from exc
    manifest = run.bundle.manifest
    click.echo(
        f"{run.rows} predictions with {runtime} -> {out}; "
        f"bundle {manifest.name} v{manifest.version} (id {run.bundle.bundle_id})"
    )
    if not run.bundle.sealed:
        click.echo(
            "warning: the bundle has no manifest.sha256 (written before bundle ids); "
            "compare its id with the published one",
            err=True,
        )
