"""``fedge serve``: the aggregation server, its settings from the command line
on top of the TOML file and the ``FEDGE_*`` variables."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from fedge.cli import options
from fedge.cli.aggregation_options import (
    AGGREGATION_KEYS,
    SECURE_KEYS,
    aggregation_options,
    secure_aggregation_options,
)
from fedge.errors import FedgeError

# The options whose ServerConfig key has another name; a dotted key is one
# of the round settings (ServerConfig.rounds). Every other option is its key.
SERVER_KEYS = {
    "per_round": "rounds.target_participants",
    "rounds_min": "rounds.min_participants",
    "deadline": "rounds.deadline_s",
    "dp_clip": "dp_clip_norm",
    "dp_noise": "dp_noise_multiplier",
    "cors_origin": "cors_origins",
    "rate_limit": "rate_limits",
    "trusted_proxy": "trusted_proxies",
    "device_ttl": "device_ttl_s",
    **SECURE_KEYS,
    **AGGREGATION_KEYS,
}


def _rate_limits(_ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]) -> Any:
    """``FAMILY=RATE/s:BURST`` repeated -> {family: spec} (checked by the config)."""
    limits = {}
    for item in value:
        family, sep, spec = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r}: write FAMILY=RATE/s:BURST (or FAMILY=off)")
        limits[family.strip()] = spec.strip()
    return limits or None


def server_overrides(params: Mapping[str, Any]) -> dict[str, Any]:
    """The settings the command line gives, as ``load_config`` overrides;
    an option left out (None, or no repeats) leaves the lower layers' value."""
    overrides: dict[str, Any] = {}
    for name, value in params.items():
        if value is None or value == ():
            continue
        table, _, key = SERVER_KEYS.get(name, name).rpartition(".")
        (overrides.setdefault(table, {}) if table else overrides)[key] = value
    return overrides


@click.command()
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
@click.option(
    "--database",
    metavar="URL",
    help="A PostgreSQL database (postgresql://user@host:port/name) instead of SQLite in the "
    "data directory; checkpoints and updates stay in the data directory. Prefer "
    "FEDGE_DATABASE or ~/.pgpass for a password [docs/postgresql.md].",
)
@options.host(help="Interface to listen on [default: 127.0.0.1].")
@options.port(help="Port (0: any free) [default: 8750].")
@click.option(
    "--model",
    type=click.Path(path_type=Path),
    help="Bundle directory (its weights.safetensors, read without TensorFlow) or "
    ".keras/.h5 model (loaded with TensorFlow) [default: the reference CNN's initial "
    "weights for the seed: shipped with fedge for seed 0, built with TensorFlow for "
    "another FEDGE_SEED].",
)
@options.strategy()
@aggregation_options
@options.local_state()
@options.per_round(help="Updates that close a round.")
@click.option("--rounds-min", type=click.IntRange(min=1), help="Quorum at the deadline.")
@options.deadline()
@click.option("--enrolment-key", help="Devices must present this key to enrol.")
@click.option(
    "--max-update-norm",
    type=click.FloatRange(min=0, min_open=True),
    help="A fixed bound on an update's L2 norm [default: adaptive, --norm-bound-multiple "
    "times the median norm of recent rounds' updates].",
)
@click.option(
    "--norm-policy",
    type=click.Choice(["reject", "clip"]),
    help="Over the bound: reject the update or clip it [default: clip].",
)
@click.option(
    "--norm-bound-multiple",
    type=click.FloatRange(min=0, min_open=True),
    help="The adaptive bound: this many times the median norm of recent rounds' "
    "accepted updates [default: 1].",
)
@click.option(
    "--device-weighting",
    type=click.Choice(["examples", "equal"]),
    help="A device's weight in a round's mean: its example count (capped at "
    "--max-example-weight) or 1 each [default: examples].",
)
@click.option(
    "--max-example-weight",
    type=click.IntRange(min=1),
    help="The most a device's example count weighs [default: 100].",
)
@click.option(
    "--max-share-multiple",
    type=click.FloatRange(min=1),
    help="No device holds more than this many times an equal share (1/n) of a "
    "round's weight [default: 2].",
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
    multiple=True,
    help="Let pages from this origin (scheme://host[:port]) call the API; repeat for more "
    "[default: none, only the server's own pages].",
)
@click.option(
    "--device-issuer",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Enrolment needs an identity token (JWT) signed by your app's backend: its public "
    "key (PEM) or a JWKS file. One device per token subject. See docs/security.md.",
)
@click.option("--device-audience", help="The 'aud' identity tokens must carry.")
@click.option("--device-issuer-name", help="The 'iss' identity tokens must carry.")
@click.option(
    "--device-ttl",
    type=click.FloatRange(min=0),
    help="Forget devices not seen for this many seconds (0: never) [default: 30 days].",
)
@click.option(
    "--rate-limit",
    multiple=True,
    callback=_rate_limits,
    help="Per-client limit FAMILY=RATE/s:BURST or FAMILY=off; families: enrol, auth, "
    "events, pages (by address), tasks, uploads, predict (by device); repeat for more "
    "[defaults: docs/security.md].",
)
@click.option(
    "--trusted-proxy",
    "--trusted-proxies",
    "trusted_proxy",
    multiple=True,
    help="A reverse proxy (address or network) whose X-Forwarded-For names the client; "
    "repeat for more [default: none, the connection's address is the client's].",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Server processes on consecutive ports from --port, sharing the PostgreSQL "
    "database and the data directory; one of them, elected, runs the rounds. Needs "
    "--database [default: 1; docs/postgresql.md].",
)
@secure_aggregation_options
def serve(config_file: Path | None, workers: int | None, **settings: Any) -> None:
    """Run the aggregation server (SQLite in a local data directory, no other
    service; or PostgreSQL with --database)."""
    from fedge.server.http.app import create_app
    from fedge.server.http.serve import serve as run_server
    from fedge.server.http.workers import own_command, supervise, worker_index

    overrides = server_overrides(settings)
    index = worker_index()
    if workers is not None and workers > 1 and index is None:
        _check_workers(overrides, config_file, workers)
        raise SystemExit(supervise(own_command(), workers))
    if index is not None:  # a worker of a supervisor: its own port
        from fedge.server.config import load_config

        base = load_config(path=config_file, overrides=overrides).port
        overrides["port"] = base + index
    try:
        app = create_app(test_config=overrides, config_file=config_file)
    except FedgeError as exc:
        raise click.ClickException(str(exc)) from exc
    run_server(app)


def _check_workers(overrides: dict[str, Any], config_file: Path | None, workers: int) -> None:
    """Refuse, before starting any, what several workers cannot run."""
    from fedge.server.config import load_config

    try:
        config = load_config(path=config_file, overrides=overrides)
    except FedgeError as exc:
        raise click.ClickException(str(exc)) from exc
    if config.database is None:
        raise click.ClickException(
            f"--workers {workers} needs --database (PostgreSQL): with SQLite one process "
            "owns the data directory"
        )
    if config.port == 0:
        raise click.ClickException(
            "--workers needs a --port: the workers listen on consecutive ports from it"
        )
    if config.secure_aggregation.enabled or config.aggregation.enabled:
        raise click.ClickException(
            "secure and asynchronous aggregation keep their state in one process's "
            "memory: run them with one worker"
        )
