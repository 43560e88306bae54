"""The ``fedge`` command line: one entry point, one subcommand per job."""

from __future__ import annotations

import os
from pathlib import Path

import click

from fedge import __version__
from fedge.errors import FedgeError


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # coremltools draws its own tqdm bars, which tear through fedge's display.
    os.environ.setdefault("TQDM_DISABLE", "1")


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
    help="int8 calibration inputs (.npy/.npz); default: the parity samples.",
)
@click.option(
    "--samples",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Parity inputs (.npy/.npz); default: the digits test split for the reference "
    "model, seeded random inputs for any other.",
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
    from rich.console import Console

    from fedge.converters.bundle import convert as convert_bundle
    from fedge.converters.cli_view import ConvertProgress, summary_table
    from fedge.converters.options import ConvertOptions

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
        max_samples=max_samples,
        name=name,
        version=version_,
        author=author,
        description=description,
        labels=tuple(x.strip() for x in labels.split(",")) if labels else None,
    )
    console = Console(stderr=True)
    try:
        with ConvertProgress(console) as progress:
            result = convert_bundle(model, out, options, progress=progress, force=force)
    except FedgeError as exc:
        raise click.ClickException(f"{exc}\nno bundle was written") from exc
    Console().print(summary_table(result))
    for outcome in result.failed:
        click.echo(f"error: {outcome.error}", err=True)
    if result.failed:
        names = ", ".join(o.target for o in result.failed)
        raise click.ClickException(f"bundle written to {out} without: {names}")


@main.command()
@click.argument("bundle", type=click.Path(file_okay=False, path_type=Path))
@click.argument("inputs", type=click.Path(dir_okay=False, path_type=Path))
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
    help="Where to write predictions: .npy, .npz or .csv.",
)
def predict(bundle: Path, inputs: Path, runtime: str, out: Path) -> None:
    """Batch predictions for INPUTS (.npy, .npz or .csv) with a runtime of BUNDLE."""
    from fedge.converters.batch_predict import predict_bundle, write_outputs

    try:
        manifest, outputs = predict_bundle(bundle, runtime, inputs)
        write_outputs(out, manifest, outputs)
    except FedgeError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{len(outputs[0])} predictions with {runtime} -> {out}")


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
) -> None:
    """Run the aggregation server (SQLite and a local data directory; no other service)."""
    from fedge.server.app import create_app
    from fedge.server.serve import serve as run_server

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
    }
    if rounds:
        overrides["rounds"] = rounds
    try:
        app = create_app(test_config=overrides, config_file=config_file)
    except FedgeError as exc:
        raise click.ClickException(str(exc)) from exc
    run_server(app)


def _faults(values: tuple[str, ...]) -> dict[str, int]:
    faults: dict[str, int] = {}
    for value in values:
        kind, _, count = value.partition("=")
        if not count.isdigit():
            raise click.BadParameter(f"expected KIND=COUNT, got {value!r}", param_hint="--fault")
        faults[kind] = int(count)
    return faults


@main.command()
@click.option("--devices", type=click.IntRange(min=1), default=20, show_default=True)
@click.option(
    "--per-round",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Updates that close a round.",
)
@click.option("--rounds", type=click.IntRange(min=1), default=10, show_default=True)
@click.option(
    "--alpha",
    type=click.FloatRange(min=0, min_open=True),
    default=0.5,
    show_default=True,
    help="Dirichlet label skew (smaller: more non-IID).",
)
@click.option(
    "--engine",
    type=click.Choice(["http", "tff"]),
    default="http",
    show_default=True,
    help="fedge's server and devices over HTTP, or TFF in-process.",
)
@click.option("--server", "server_url", help="A running server (default: an embedded one).")
@click.option(
    "--runtime",
    type=click.Choice(["tflite", "keras"]),
    default="tflite",
    show_default=True,
    help="On-device training runtime.",
)
@click.option("--local-epochs", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option(
    "--learning-rate", type=click.FloatRange(min=0, min_open=True), default=0.05, show_default=True
)
@click.option(
    "--strategy",
    type=click.Choice(["fedavg", "fedavgm", "fedadam", "median", "trimmed_mean"]),
    default="fedavg",
    show_default=True,
)
@click.option("--dropout", type=click.FloatRange(0, 1), default=0.0, show_default=True)
@click.option(
    "--crash",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Chance a device dies mid-upload (and retries after a restart).",
)
@click.option(
    "--fault",
    multiple=True,
    metavar="KIND=COUNT",
    help="Faulty devices: nan, wrong_shape, replay, stale_base (repeatable).",
)
@click.option("--over-selection", type=click.FloatRange(min=1), default=1.0, show_default=True)
@click.option(
    "--deadline",
    type=click.FloatRange(min=0, min_open=True),
    default=20.0,
    show_default=True,
    help="Seconds a round stays open.",
)
@click.option("--workers", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the run as JSON.",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write accuracy and participation per round as a PNG.",
)
def simulate(
    devices: int,
    per_round: int,
    rounds: int,
    alpha: float,
    engine: str,
    server_url: str | None,
    runtime: str,
    local_epochs: int,
    batch_size: int,
    learning_rate: float,
    strategy: str,
    dropout: float,
    crash: float,
    fault: tuple[str, ...],
    over_selection: float,
    deadline: float,
    workers: int,
    seed: int,
    report_path: Path | None,
    plot_path: Path | None,
) -> None:
    """Run federated rounds with a fleet of simulated devices."""
    if per_round > devices:
        raise click.BadParameter(
            f"{per_round} per round > {devices} devices", param_hint="--per-round"
        )
    if engine == "tff":
        from fedge.client_sim.tff_cli import run_tff_simulation

        run_tff_simulation(
            devices, per_round, rounds, alpha, seed, local_epochs, batch_size, learning_rate
        )
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from fedge.client_sim.fleet import FleetConfig, RoundReport, run_fleet
    from fedge.client_sim.report import closing_lines, summary_table, write_json, write_plot

    config = FleetConfig(
        devices=devices,
        per_round=per_round,
        rounds=rounds,
        alpha=alpha,
        seed=seed,
        local_epochs=local_epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        runtime=runtime,
        dropout=dropout,
        crash=crash,
        faults=_faults(fault),
        workers=workers,
        deadline_s=deadline,
        over_selection=over_selection,
        server_url=server_url,
        strategy=strategy,
    )
    console = Console(stderr=True)
    bar = Progress(
        TextColumn("[bold]rounds"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
    )
    task = bar.add_task("rounds", total=rounds, status="preparing bundle and devices")

    def on_round(report: RoundReport) -> None:
        bar.update(
            task,
            advance=1,
            status=(
                f"round {report.round_id} {report.state}: acc {report.global_accuracy:.3f}, "
                f"{report.participants} updates, {report.seconds:.1f} s"
            ),
        )

    try:
        with bar:
            result = run_fleet(config, progress=on_round)
    except (FedgeError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    Console().print(summary_table(result))
    for line in closing_lines(result):
        click.echo(line)
    if report_path is not None:
        write_json(result, report_path)
        click.echo(f"report: {report_path}")
    if plot_path is not None:
        write_plot(result, plot_path)
        click.echo(f"plot: {plot_path}")


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
