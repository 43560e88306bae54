"""``fedge simulate``: federated rounds with a fleet of simulated devices."""

from __future__ import annotations

from pathlib import Path

import click

from fedge.cli.console import make_console
from fedge.errors import FedgeError
from fedge.reference.data import PUBLIC_FRACTION

STRATEGIES = ["fedavg", "fedavgm", "fedadam", "median", "trimmed_mean"]


def _faults(values: tuple[str, ...]) -> dict[str, int]:
    faults: dict[str, int] = {}
    for value in values:
        kind, _, count = value.partition("=")
        if not count.isdigit():
            raise click.BadParameter(f"expected KIND=COUNT, got {value!r}", param_hint="--fault")
        faults[kind] = int(count)
    return faults


@click.command()
@click.option(
    "--model",
    type=click.Path(exists=True, path_type=Path),
    help="The model to federate: a bundle directory with a TFLite training artifact, or a "
    "Keras model (converted first). Rounds start from its weights. Default: the reference "
    "digits CNN, trained centrally on the public part of the digits and deployed.",
)
@click.option(
    "--data",
    type=click.Path(exists=True, path_type=Path),
    help="The devices' data for --model: .npz (x or one array per input, y, optional "
    "device), .csv (a y or label column, optional device column, features) or a folder of "
    "images by class folder. Device ids give the natural partition.",
)
@click.option(
    "--devices",
    type=click.IntRange(min=1),
    help="Number of devices [default: one per device id in --data, else 20].",
)
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
    help="Dirichlet label skew of a classifier's data without device ids (smaller: more "
    "non-IID); a regressor's is split evenly.",
)
@click.option(
    "--public-fraction",
    type=click.FloatRange(0, 1, max_open=True),
    default=PUBLIC_FRACTION,
    show_default=True,
    help="Reference task: the share of the digits trained on centrally before deploying "
    "(0: start from a random CNN); the devices hold the rest.",
)
@click.option(
    "--min-examples",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Reference task: the fewest examples a device holds.",
)
@click.option(
    "--data-shards",
    type=click.IntRange(min=1),
    help="Reference task, for more devices than it has examples: cut the data into this "
    "many shards, device i holding shard i mod N [default: one per device].",
)
@click.option(
    "--test-fraction",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.2,
    show_default=True,
    help="--data: the share kept as the global test split.",
)
@click.option(
    "--holdout-fraction",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.2,
    show_default=True,
    help="--data: each device's share kept as its own held-out data.",
)
@click.option(
    "--engine",
    type=click.Choice(["http", "tff"]),
    default="http",
    show_default=True,
    help="fedge's server and devices over HTTP, or TFF in-process (reference task only).",
)
@click.option(
    "--server",
    "server_url",
    help="A running server (default: an embedded one). Its model is taken from it; "
    "with --model, the two must be the same model.",
)
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
@click.option("--strategy", type=click.Choice(STRATEGIES), default="fedavg", show_default=True)
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
    help="Faulty devices: nan, wrong_shape, replay, stale_base, poison (trains on wrong "
    "labels: its updates pass the server's checks) (repeatable).",
)
@click.option("--over-selection", type=click.FloatRange(min=1), default=1.0, show_default=True)
@click.option(
    "--deadline",
    type=click.FloatRange(min=0, min_open=True),
    default=20.0,
    show_default=True,
    help="Seconds a round stays open.",
)
@click.option(
    "--release-every",
    type=click.IntRange(min=1),
    help="After every N rounds, ask the server to cut a release of the global model; its "
    "canary devices evaluate it against the live release on their own data and the server "
    "promotes or rolls it back.",
)
@click.option(
    "--release-rollout",
    type=click.FloatRange(0, 100),
    default=50.0,
    show_default=True,
    help="Percent of devices a cut release reaches first (its canary slice).",
)
@click.option(
    "--canary-min-reports",
    type=click.IntRange(min=1),
    help="Embedded server: canary reports that decide a release [default: the server's, 5].",
)
@click.option(
    "--admin-token",
    envvar="FEDGE_ADMIN_TOKEN",
    help="--server's admin token, for --release-every (or FEDGE_ADMIN_TOKEN); the embedded "
    "server's own is used without --server.",
)
@click.option("--workers", type=click.IntRange(min=1), default=8, show_default=True)
@click.option(
    "--backend",
    type=click.Choice(["thread", "ray"]),
    default="thread",
    show_default=True,
    help="Where the devices run: threads of this process, or Ray actors (needs "
    "pip install 'fedge[ray]'); either way they speak HTTP to the server.",
)
@click.option(
    "--address",
    "ray_address",
    help="--backend ray: a running Ray cluster to join (auto, HOST:PORT or "
    "ray://HOST:PORT; default: start a local Ray). Its machines must reach the server: "
    "give --server a URL they can reach.",
)
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
    help="Write the metric per round, deployed -> final -> personalised, and participation "
    "as a PNG.",
)
def simulate(
    model: Path | None,
    data: Path | None,
    devices: int | None,
    per_round: int,
    rounds: int,
    alpha: float,
    public_fraction: float,
    min_examples: int,
    data_shards: int | None,
    test_fraction: float,
    holdout_fraction: float,
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
    release_every: int | None,
    release_rollout: float,
    canary_min_reports: int | None,
    admin_token: str | None,
    workers: int,
    backend: str,
    ray_address: str | None,
    seed: int,
    report_path: Path | None,
    plot_path: Path | None,
) -> None:
    """Run federated rounds with a fleet of simulated devices."""
    if devices is not None and per_round > devices:
        raise click.BadParameter(
            f"{per_round} per round > {devices} devices", param_hint="--per-round"
        )
    if ray_address is not None and backend != "ray":
        raise click.UsageError("--address is the Ray cluster's: give --backend ray")
    if engine == "tff" and backend != "thread":
        raise click.UsageError("--engine tff runs in-process: no --backend ray")
    if engine == "tff":
        if model is not None or data is not None:
            raise click.UsageError("--engine tff runs the reference task only (no --model/--data)")
        from fedge.client_sim.tff.simulate import run_tff_simulation

        run_tff_simulation(
            devices or 20, per_round, rounds, alpha, seed, local_epochs, batch_size, learning_rate
        )
        return
    from fedge.cli.fleet_progress import run_with_progress
    from fedge.client_sim.fleet.config import FleetConfig
    from fedge.client_sim.report.releases import release_lines, releases_table
    from fedge.client_sim.report.tables import (
        closing_lines,
        scores_table,
        summary_table,
        write_json,
        write_plot,
    )

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
        backend=backend,
        ray_address=ray_address,
        deadline_s=deadline,
        over_selection=over_selection,
        server_url=server_url,
        strategy=strategy,
        model=model,
        data=data,
        public_fraction=public_fraction,
        min_examples=min_examples,
        data_shards=data_shards,
        test_fraction=test_fraction,
        holdout_fraction=holdout_fraction,
        release_every=release_every,
        release_rollout=release_rollout,
        canary_min_reports=canary_min_reports,
        admin_token=admin_token if server_url is not None else None,
    )
    try:
        result = run_with_progress(config)
    except (FedgeError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    out = make_console()
    out.print(summary_table(result))
    out.print(scores_table(result))
    releases = releases_table(result)
    if releases is not None:
        out.print(releases)
    for line in [*closing_lines(result), *release_lines(result)]:
        click.echo(line)
    if report_path is not None:
        write_json(result, report_path)
        click.echo(f"report: {report_path}")
    if plot_path is not None:
        write_plot(result, plot_path)
        click.echo(f"plot: {plot_path}")
