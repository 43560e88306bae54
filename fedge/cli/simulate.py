"""``fedge simulate``: federated rounds with a fleet of simulated devices."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from fedge.cli import options
from fedge.cli.aggregation_options import aggregation_options
from fedge.cli.console import make_console
from fedge.errors import ConfigError, FedgeError

if TYPE_CHECKING:
    from fedge.client_sim.fleet.config import FleetConfig

# The options whose FleetConfig field has another name; every other option
# but --engine, --report and --plot is its field's name.
FLEET_FIELDS = {
    "server": "server_url",
    "deadline": "deadline_s",
    "fault": "faults",
    "address": "ray_address",
}
HEALTH_OPTIONS = ("health_window", "restyle", "restyle_at")


RESTYLE_STYLE = "invert"  # the new handwriting style of --restyle (dark strokes on a light page)


def _health(settings: Mapping[str, Any]) -> dict[str, Any]:
    """--health-window, --restyle and --restyle-at as the fleet's fields."""
    fraction, at, window = settings["restyle"], settings["restyle_at"], settings["health_window"]
    if (fraction is None) != (at is None):
        raise click.UsageError(
            "--restyle FRACTION and --restyle-at ROUND go together: which devices, from when"
        )
    if fraction is not None and window is None:
        raise click.UsageError(
            "--restyle shows as drift in the devices' health reports: give --health-window S"
        )
    return {
        "health_window_s": window,
        "restyle": None if fraction is None else RESTYLE_STYLE,
        "restyle_fraction": 1.0 if fraction is None else fraction,
        "restyle_after_round": 0 if at is None else at,
    }


def _faults(values: tuple[str, ...]) -> dict[str, int]:
    from fedge.client_sim.fleet.config import parse_faults

    try:
        return parse_faults(values)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--fault") from exc


def fleet_config(settings: Mapping[str, Any]) -> FleetConfig:
    """The fleet's record from the command's parameters (all but --engine,
    --report and --plot)."""
    from fedge.client_sim.fleet.config import FleetConfig

    # The embedded server has its own admin token: a given one is --server's.
    admin_token = settings["admin_token"] if settings["server"] is not None else None
    # Secure rounds are the embedded server's setting (a --server decides its own).
    secure = settings.get("secure_aggregation", False)
    given = {
        k: v for k, v in settings.items() if k not in HEALTH_OPTIONS and k != "secure_aggregation"
    }
    return options.build_record(
        FleetConfig,
        {
            **given,
            "fault": _faults(settings["fault"]),
            "admin_token": admin_token,
            "aggregation": settings.get("aggregation") or "sync",
            **({"server_settings": {"secure_aggregation": True}} if secure else {}),
        }
        | _health(settings),
        FLEET_FIELDS,
    )


def _check_combinations(engine: str, settings: Mapping[str, Any]) -> None:
    """Options that cannot go together, refused before anything starts."""
    if settings["secure_aggregation"] and settings["server"] is not None:
        raise click.UsageError("--secure-aggregation is the embedded server's: --server decides")
    if settings["secure_aggregation"] and engine == "tff":
        raise click.UsageError("--engine tff has no server: no --secure-aggregation")
    devices, per_round = settings["devices"], settings["per_round"]
    if devices is not None and per_round is not None and per_round > devices:
        raise click.BadParameter(
            f"{per_round} per round > {devices} devices: give --per-round {devices} or fewer, "
            f"or --devices {per_round} or more",
            param_hint="--per-round",
        )
    if settings["address"] is not None and settings["backend"] != "ray":
        raise click.UsageError("--address is the Ray cluster's: give --backend ray")
    if engine == "tff" and settings["backend"] != "thread":
        raise click.UsageError("--engine tff runs in-process: no --backend ray")


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
@options.devices(help="Number of devices [default: one per device id in --data, else 20].")
@options.per_round(
    help="Updates that close a round [default: min(10, --devices); with --server, the "
    "server's (fedge serve --per-round), which a different value here does not change].",
)
@options.rounds(default=10)
@click.option(
    "--alpha",
    type=click.FloatRange(min=0, min_open=True),
    default=0.5,
    show_default=True,
    help="Dirichlet label skew of a classifier's data without device ids (smaller: more "
    "non-IID); a regressor's is split evenly.",
)
@options.public_fraction(
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
    "many shards, device i holding shard i mod N [default: one per device, or as many as "
    "the data can fill with --min-examples each].",
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
@options.server(
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
@options.batch_size(default=16)
@options.learning_rate(default=0.05)
@options.strategy(default="fedavg")
@aggregation_options
@click.option(
    "--speed-spread",
    type=click.FloatRange(0, 10, max_open=True),
    default=0.0,
    show_default=True,
    metavar="SIGMA",
    help="Heavy-tailed device speeds: compute time and network delay log-normal with this "
    "spread, 10% slow browsers (10x slower), availability windows; 0: uniform devices. "
    "The same profiles drive --aggregation sync and async.",
)
@options.local_state()
@click.option(
    "--device-weighting",
    type=click.Choice(["examples", "equal"]),
    help="The embedded server's weight of a device in a round's mean: its example count "
    "(capped) or 1 each [default: the server's, examples].",
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
    help="Faulty devices: nan, wrong_shape, replay, stale_base, poison (trains on wrong "
    "labels: its updates pass the server's checks) (repeatable).",
)
@click.option("--over-selection", type=click.FloatRange(min=1), default=1.0, show_default=True)
@options.deadline(default=20.0)
@click.option(
    "--release-every",
    type=click.IntRange(min=1),
    help="After every N rounds, ask the server to cut a release of the global model; its "
    "canary devices evaluate it against the live release on their own data and the server "
    "promotes it, rolls it back or keeps collecting (the sequential test of docs/releases.md).",
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
    help="Embedded server: the floor of counted devices before the canary's sequential "
    "test may decide a release [default: the server's, 5].",
)
@options.admin_token(
    help="--server's admin token, for --release-every (or FEDGE_ADMIN_TOKEN); the embedded "
    "server's own is used without --server.",
)
@click.option(
    "--health-window",
    type=click.FloatRange(1, 86_400 * 30),
    metavar="S",
    help="The live model's health: the embedded server's window in seconds "
    "(health_window_s); after every round each device reports how the release it serves "
    "does on its held-out data, and the server's drift rule may raise the alert "
    "(docs/monitoring.md). Default: no health reports.",
)
@click.option(
    "--restyle",
    type=click.FloatRange(0, 1, min_open=True),
    metavar="FRACTION",
    help="With --health-window and --restyle-at: this share of the devices (chosen by "
    "--seed) switch to a new handwriting style (inverted digits) at a round: drift.",
)
@click.option(
    "--restyle-at",
    type=click.IntRange(min=1),
    metavar="ROUND",
    help="The round after which the --restyle devices write in the new style.",
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
    help="--backend ray: a running Ray cluster to join (auto, HOST:PORT or "
    "ray://HOST:PORT; default: start a local Ray). Its machines must reach the server: "
    "give --server a URL they can reach.",
)
@options.seed()
@click.option(
    "--report",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the run as JSON.",
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the metric per round, deployed -> final -> personalised, and participation "
    "as a PNG.",
)
@click.option(
    "--secure-aggregation",
    is_flag=True,
    help="The embedded server runs secure rounds (SecAgg+): it learns only each round's sum; "
    "give --workers at least --per-round, or each round waits for its deadline.",
)
def simulate(engine: str, report: Path | None, plot: Path | None, **settings: Any) -> None:
    """Run federated rounds with a fleet of simulated devices."""
    _check_combinations(engine, settings)
    if engine == "tff":
        if settings["model"] is not None or settings["data"] is not None:
            raise click.UsageError("--engine tff runs the reference task only (no --model/--data)")
        from fedge.client_sim.fleet.config import DEFAULT_DEVICES
        from fedge.client_sim.fleet.round_target import fleet_round_target
        from fedge.client_sim.tff.simulate import run_tff_simulation

        fleet = settings["devices"] or DEFAULT_DEVICES
        run_tff_simulation(
            fleet,
            fleet_round_target(settings["per_round"], fleet).per_round,
            settings["rounds"],
            settings["alpha"],
            settings["seed"],
            settings["local_epochs"],
            settings["batch_size"],
            settings["learning_rate"],
        )
        return
    from fedge.cli.fleet_progress import run_with_progress
    from fedge.client_sim.report.health import health_lines, health_table
    from fedge.client_sim.report.releases import release_lines, releases_table
    from fedge.client_sim.report.tables import (
        closing_lines,
        scores_table,
        summary_table,
        write_json,
        write_plot,
    )

    config = fleet_config(settings)
    from fedge.client_sim.fleet.async_run import free_run_applies

    if free_run_applies(config):
        _simulate_async(config, report, plot)
        return
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
    health = health_table(result)
    if health is not None:
        out.print(health)
    for line in [*closing_lines(result), *release_lines(result), *health_lines(result)]:
        click.echo(line)
    if report is not None:
        write_json(result, report)
        click.echo(f"report: {report}")
    if plot is not None:
        write_plot(result, plot)
        click.echo(f"plot: {plot}")


def _simulate_async(config: FleetConfig, report: Path | None, plot: Path | None) -> None:
    """Async mode on the embedded server: the free run, its versions over time."""
    from fedge.client_sim.fleet.async_run import run_async_fleet
    from fedge.client_sim.report import versions

    if plot is not None:
        raise click.UsageError("--plot draws rounds: with --aggregation async use --report")
    err = make_console(stderr=True)
    try:
        result = run_async_fleet(config, say=lambda message: err.print(message, markup=False))
    except (FedgeError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    make_console().print(versions.versions_table(result))
    for line in versions.closing_lines(result):
        click.echo(line)
    if report is not None:
        versions.write_json(result, report)
        click.echo(f"report: {report}")
