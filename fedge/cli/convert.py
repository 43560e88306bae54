"""``fedge convert``: a Keras model to a verified bundle."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from fedge.cli import options
from fedge.cli.console import make_console
from fedge.converters.options import LOSS_ALIASES, LOSSES, ConvertOptions, Tolerance
from fedge.errors import ConfigError, FedgeError

# The options whose ConvertOptions field has another name; every other
# option is its field's name (--no-verify and --no-training set ``verify``
# and ``tflite_training`` to False directly).
CONVERT_FIELDS = {
    "quantize": "tflite_quantize",
    "coreml_target": "coreml_minimum_target",
    "calibration": "calibration_path",
    "samples": "samples_path",
    "tolerance": "target_tolerances",
}


def _tolerances(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, Tolerance]:
    from fedge.converters.options import parse_tolerance

    try:
        return dict(parse_tolerance(text) for text in values)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc


def _custom_objects(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[str, ...]:
    return tuple(spec for specs in values for spec in options.comma_list(ctx, param, specs))


def _labels(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[str, ...] | None:
    # Blank labels are kept, for the converter to refuse by position.
    return tuple(label.strip() for label in value.split(",")) if value else None


def _feature_names(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, tuple[str, ...]]:
    from fedge.converters.source.features import parse_feature_names

    try:
        return {k: tuple(v) for k, v in parse_feature_names(values).items()}
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc


def _vocabularies(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, tuple[str, ...]]:
    from fedge.converters.source.vocabulary import parse_vocabulary_options

    try:
        return parse_vocabulary_options(values)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc


def convert_options(settings: Mapping[str, Any]) -> ConvertOptions:
    """The conversion's record from the command's parameters (all but MODEL,
    --out and --force)."""
    return options.build_record(ConvertOptions, settings, CONVERT_FIELDS)


@click.command()
@click.argument("model", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out", type=click.Path(path_type=Path), required=True, help="Bundle directory to create."
)
@options.targets(help="Comma-separated subset of tflite, tfjs, coreml.")
@click.option(
    "--quantize",
    type=click.Choice(["none", "fp16", "dynamic", "int8"]),
    default="none",
    show_default=True,
    help="TFLite quantization.",
)
@click.option(
    "--tfjs-quantize",
    type=click.Choice(["none", "float16", "uint8"]),
    default="none",
    show_default=True,
    help="TF.js weight quantization.",
)
@click.option(
    "--tfjs-shard-bytes",
    type=click.IntRange(min=1024),
    default=4 * 1024 * 1024,
    show_default=True,
    help="TF.js weight shard size.",
)
@click.option(
    "--coreml-precision", type=click.Choice(["fp16", "fp32"]), default="fp16", show_default=True
)
@click.option(
    "--coreml-target",
    default="iOS16",
    show_default=True,
    help="Core ML minimum deployment target (iOS15..iOS18, macOS12..macOS15).",
)
@click.option(
    "--calibration",
    type=click.Path(dir_okay=False, path_type=Path),
    help="int8 calibration inputs (.npy/.npz/.csv), a few hundred real ones; only with "
    "--quantize int8. Default: --samples; int8 is refused without either (but for the "
    "reference model).",
)
@click.option(
    "--samples",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Parity inputs (.npy/.npz/.csv); default: the digits test split for the reference "
    "model, seeded random inputs for any other (the manifest says which).",
)
@click.option(
    "--tolerance",
    multiple=True,
    metavar="TARGET=BOUND",
    callback=_tolerances,
    help="Parity bound for one target (tflite, tfjs, coreml, tflite_train): a max abs error "
    "(tflite=1e-3), a top-1 agreement (tflite=top1:0.95) or an error relative to the "
    "outputs' range (tflite=rel:0.01). Repeatable.",
)
@click.option(
    "--keep-failed",
    is_flag=True,
    help="Keep a target that fails parity in the bundle, marked failed in the manifest "
    "(still an error: exit 1).",
)
@click.option(
    "--loss",
    type=click.Choice([*LOSSES, *LOSS_ALIASES]),
    help="Loss of the TFLite training artifact; default: the model's compiled loss.",
)
@click.option(
    "--from-logits", is_flag=True, help="With a cross-entropy --loss: the outputs are logits."
)
@click.option(
    "--custom-objects",
    multiple=True,
    metavar="MODULE[:NAME]",
    callback=_custom_objects,
    help="The model's custom classes: a module to import (it registers them with Keras), "
    "or MODULE:NAME for one class. Repeatable; commas separate several.",
)
@click.option(
    "--unsafe-deserialization",
    is_flag=True,
    help="Load Lambda layers, whose Python code is stored in the model file and runs as it "
    "loads. Only for a file you trust.",
)
@click.option("--max-samples", type=click.IntRange(min=1), default=512, show_default=True)
@click.option(
    "--no-verify",
    "verify",
    is_flag=True,
    flag_value=False,
    default=True,
    help="Skip the parity checks.",
)
@click.option(
    "--no-training",
    "tflite_training",
    is_flag=True,
    flag_value=False,
    default=True,
    help="Do not write the TFLite training artifact.",
)
@click.option("--strict", is_flag=True, help="Fail (no bundle) if any target fails.")
@click.option("--force", is_flag=True, help="Replace an existing bundle at --out.")
@click.option("--name", help="Model name in the manifest (default: the Keras model's name).")
@click.option("--version", default="1", show_default=True)
@click.option("--author", default="fedge", show_default=True)
@click.option("--description", default="", help="One line for the model card and Core ML.")
@click.option(
    "--labels",
    callback=_labels,
    help="Comma-separated class labels for a classifier; default: 0..9 for the reference "
    "model, none for any other.",
)
@click.option(
    "--feature-names",
    multiple=True,
    callback=_feature_names,
    help="Names of a vector input's values, comma-separated (INPUT=a,b,c for one of several "
    "inputs; repeatable); default: a samples CSV's header. The browser page names its "
    "form's fields from them.",
)
@click.option(
    "--vocabulary",
    "vocabularies",
    multiple=True,
    callback=_vocabularies,
    help="A token sequence input's vocabulary: a file with one token per line, the token of "
    "id 2 first (0 is padding, 1 out-of-vocabulary); INPUT=FILE for one of several inputs. "
    "The browser page then takes text for it.",
)
def convert(model: Path, out: Path, force: bool, **settings: Any) -> None:
    """Convert a Keras model (.keras, .h5 or SavedModel) to a verified bundle."""
    from fedge.converters.bundle import convert as convert_bundle
    from fedge.converters.cli_view import ConvertProgress, summary_table

    chosen = convert_options(settings)
    console = make_console(stderr=True)
    try:
        with ConvertProgress(console) as progress:
            result = convert_bundle(model, out, chosen, progress=progress, force=force)
    except ConfigError as exc:  # options that cannot work (for this model): exit 2
        raise click.UsageError(f"{exc}\nno bundle was written") from exc
    except FedgeError as exc:
        raise click.ClickException(f"{exc}\nno bundle was written") from exc
    make_console().print(summary_table(result))
    for outcome in result.failed:
        click.echo(f"error: {outcome.error}", err=True)
    if result.failed:
        names = ", ".join(o.target for o in result.failed)
        if chosen.keep_failed:
            raise click.ClickException(
                f"bundle written to {out} with failed (kept, marked in the manifest): {names}"
            )
        raise click.ClickException(f"bundle written to {out} without: {names}")
