"""The ``fedge`` command line: one entry point, one subcommand per job."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import click

from fedge import __version__
from fedge.cli.console import make_console
from fedge.converters.options import LOSS_ALIASES, LOSSES
from fedge.errors import ConfigError, FedgeError
from fedge.reference.data import PUBLIC_FRACTION

# Libraries whose warnings are notices about themselves (versions they were
# tested with, macOS-only parts, Keras's uncompiled metrics), not about the
# user's model; their errors still show.
_NOISY_LOGGERS = ("tensorflow", "absl", "coremltools")


def _library_notice(record: logging.LogRecord) -> bool:
    """Drop TF Decision Forests' version notice (logged on the root logger
    when tensorflowjs imports it); keep every other record."""
    return record.levelno >= logging.ERROR or "tensorflow_decision_forests" not in record.pathname


def _quiet_tensorflow() -> None:
    """Keep the libraries' import-time notices off the user's screen.

    Runs before anything imports TensorFlow, which reads its C++ log level
    once; a level the user set in the environment wins.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # coremltools draws its own tqdm bars, which tear through fedge's display.
    os.environ.setdefault("TQDM_DISABLE", "1")
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    logging.getLogger().addFilter(_library_notice)  # the same object: added once
    # tensorflow_hub (imported by tensorflowjs) imports pkg_resources.
    warnings.filterwarnings("ignore", "pkg_resources is deprecated", UserWarning)


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
@click.option(
    "--public-fraction",
    type=click.FloatRange(0, 1, max_open=True),
    default=PUBLIC_FRACTION,
    show_default=True,
    help="Train on this share of the digits' training split (the team's public data); "
    "fedge simulate's devices hold the rest. 0: all of it.",
)
def train(
    out: Path,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    public_fraction: float,
) -> None:
    """Train the reference digits CNN centrally and print its test accuracy."""
    from fedge.reference.train import TrainConfig, train_reference_model

    config = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        public_fraction=public_fraction,
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


@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option(
    "--out", type=click.Path(path_type=Path), required=True, help="Bundle directory to create."
)
@click.option(
    "--targets",
    default="tflite,tfjs,coreml",
    show_default=True,
    help="Comma-separated subset of tflite, tfjs, coreml.",
)
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
    "tolerances",
    multiple=True,
    metavar="TARGET=BOUND",
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
    "custom_objects",
    multiple=True,
    metavar="MODULE[:NAME]",
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
@click.option("--no-verify", is_flag=True, help="Skip the parity checks.")
@click.option("--no-training", is_flag=True, help="Do not write the TFLite training artifact.")
@click.option("--strict", is_flag=True, help="Fail (no bundle) if any target fails.")
@click.option("--force", is_flag=True, help="Replace an existing bundle at --out.")
@click.option("--name", help="Model name in the manifest (default: the Keras model's name).")
@click.option("--version", "version_", default="1", show_default=True)
@click.option("--author", default="fedge", show_default=True)
@click.option("--description", default="", help="One line for the model card and Core ML.")
@click.option(
    "--labels",
    help="Comma-separated class labels for a classifier; default: 0..9 for the reference "
    "model, none for any other.",
)
def convert(
    model: Path,
    out: Path,
    targets: str,
    quantize: str,
    tfjs_quantize: str,
    tfjs_shard_bytes: int,
    coreml_precision: str,
    coreml_target: str,
    calibration: Path | None,
    samples: Path | None,
    tolerances: tuple[str, ...],
    keep_failed: bool,
    loss: str | None,
    from_logits: bool,
    custom_objects: tuple[str, ...],
    unsafe_deserialization: bool,
    max_samples: int,
    no_verify: bool,
    no_training: bool,
    strict: bool,
    force: bool,
    name: str | None,
    version_: str,
    author: str,
    description: str,
    labels: str | None,
) -> None:
    """Convert a Keras model (.keras, .h5 or SavedModel) to a verified bundle."""
    from fedge.converters.bundle import convert as convert_bundle
    from fedge.converters.cli_view import ConvertProgress, summary_table
    from fedge.converters.options import ConvertOptions, parse_tolerance

    try:
        target_tolerances = dict(parse_tolerance(text) for text in tolerances)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    options = ConvertOptions(
        targets=tuple(t.strip() for t in targets.split(",") if t.strip()),
        tflite_quantize=quantize,
        tflite_training=not no_training,
        tfjs_quantize=tfjs_quantize,
        tfjs_shard_bytes=tfjs_shard_bytes,
        coreml_precision=coreml_precision,
        coreml_minimum_target=coreml_target,
        strict=strict,
        verify=not no_verify,
        samples_path=samples,
        calibration_path=calibration,
        target_tolerances=target_tolerances,
        keep_failed=keep_failed,
        loss=loss,
        from_logits=from_logits,
        custom_objects=tuple(
            spec.strip() for specs in custom_objects for spec in specs.split(",") if spec.strip()
        ),
        unsafe_deserialization=unsafe_deserialization,
        max_samples=max_samples,
        name=name,
        version=version_,
        author=author,
        description=description,
        labels=tuple(x.strip() for x in labels.split(",")) if labels else None,
    )
    console = make_console(stderr=True)
    try:
        with ConvertProgress(console) as progress:
            result = convert_bundle(model, out, options, progress=progress, force=force)
    except ConfigError as exc:  # options that cannot work (for this model): exit 2
        raise click.UsageError(f"{exc}\nno bundle was written") from exc
    except FedgeError as exc:
        raise click.ClickException(f"{exc}\nno bundle was written") from exc
    make_console().print(summary_table(result))
    for outcome in result.failed:
        click.echo(f"error: {outcome.error}", err=True)
    if result.failed:
        names = ", ".join(o.target for o in result.failed)
        if keep_failed:
            raise click.ClickException(
                f"bundle written to {out} with failed (kept, marked in the manifest): {names}"
            )
        raise click.ClickException(f"bundle written to {out} without: {names}")


class BadInput(click.ClickException):
    """Input the command cannot use (a file's values, an output path): exit 2,
    like a bad argument, without click's usage text."""

    exit_code = 2


def _bundle_id(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from fedge.bundle.hashing import is_sha256

    if value is not None and not is_sha256(value):
        raise click.BadParameter(f"a bundle id is 64 hex digits (a sha256); got {value!r}")
    return value


@main.command()
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


@main.command()
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML configuration file (keys as in fedge.server.config.ServerConfig).",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the database, checkpoints and updates live [default: fedge-data].",
)
@click.option("--host", help="Interface to listen on [default: 127.0.0.1].")
@click.option("--port", type=click.IntRange(0, 65535), help="Port (0: any free) [default: 8750].")
@click.option(
    "--model",
    type=click.Path(path_type=Path),
    help="Bundle directory (its weights.safetensors, read without TensorFlow) or "
    ".keras/.h5 model (loaded with TensorFlow) [default: the reference CNN's initial "
    "weights for the seed: shipped with fedge for seed 0, built with TensorFlow for "
    "another FEDGE_SEED].",
)
@click.option(
    "--strategy", type=click.Choice(["fedavg", "fedavgm", "fedadam", "median", "trimmed_mean"])
)
@click.option("--rounds-target", type=click.IntRange(min=1), help="Updates that close a round.")
@click.option("--rounds-min", type=click.IntRange(min=1), help="Quorum at the deadline.")
@click.option(
    "--deadline", type=click.FloatRange(min=0, min_open=True), help="Seconds a round stays open."
)
@click.option("--enrolment-key", help="Devices must present this key to enrol.")
@click.option(
    "--max-update-norm",
    type=click.FloatRange(min=0, min_open=True),
    help="Bound on an update's L2 norm.",
)
@click.option(
    "--norm-policy",
    type=click.Choice(["reject", "clip"]),
    help="Over the bound: reject the update or clip it [default: reject].",
)
@click.option(
    "--dp-clip",
    type=click.FloatRange(min=0, min_open=True),
    help="Central DP: clip every update to this L2 norm.",
)
@click.option(
    "--dp-noise",
    type=click.FloatRange(min=0),
    help="Central DP: Gaussian noise multiplier (std = multiplier x clip / K).",
)
@click.option(
    "--cors-origin",
    "cors_origins",
    multiple=True,
    help="Let pages from this origin (scheme://host[:port]) call the API; repeat for more "
    "[default: none, only the server's own pages].",
)
def serve(
    config_file: Path | None,
    data_dir: Path | None,
    host: str | None,
    port: int | None,
    model: Path | None,
    strategy: str | None,
    rounds_target: int | None,
    rounds_min: int | None,
    deadline: float | None,
    enrolment_key: str | None,
    max_update_norm: float | None,
    norm_policy: str | None,
    dp_clip: float | None,
    dp_noise: float | None,
    cors_origins: tuple[str, ...],
) -> None:
    """Run the aggregation server (SQLite and a local data directory; no other service)."""
    from fedge.server.http.app import create_app
    from fedge.server.http.serve import serve as run_server

    rounds = {
        k: v
        for k, v in {
            "target_participants": rounds_target,
            "min_participants": rounds_min,
            "deadline_s": deadline,
        }.items()
        if v is not None
    }
    overrides: dict[str, object] = {
        "data_dir": data_dir,
        "host": host,
        "port": port,
        "model": model,
        "strategy": strategy,
        "enrolment_key": enrolment_key,
        "max_update_norm": max_update_norm,
        "norm_policy": norm_policy,
        "dp_clip_norm": dp_clip,
        "dp_noise_multiplier": dp_noise,
        "cors_origins": cors_origins or None,
    }
    if rounds:
        overrides["rounds"] = rounds
    try:
        app = create_app(test_config=overrides, config_file=config_file)
    except FedgeError as exc:
        raise click.ClickException(str(exc)) from exc
    run_server(app)


@main.command("setup-node")
@click.option(
    "--prefix",
    type=click.Path(file_okay=False, path_type=Path),
    help="npm prefix to install into (gets node_modules/) "
    "[default: a per-user directory, where fedge looks].",
)
def setup_node(prefix: Path | None) -> None:
    """Install the npm packages for TF.js parity (@tensorflow/tfjs) with npm ci.

    They come from the package-lock.json packaged with fedge; a git checkout's
    web/node_modules (scripts/setup.sh) or $FEDGE_NODE_MODULES also works."""
    from fedge import web
    from fedge.web.npm import install

    target = web.user_prefix() if prefix is None else prefix
    try:
        modules = install(target, say=lambda line: click.echo(f"==> {line}", err=True))
    except web.NodePackagesError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(str(modules))


def _register_commands() -> None:
    from fedge.cli.demo import demo
    from fedge.cli.release import COMMANDS as RELEASE_COMMANDS
    from fedge.cli.simulate import simulate

    main.add_command(demo)
    main.add_command(simulate)
    for command in RELEASE_COMMANDS:
        main.add_command(command)


_register_commands()
