"""``fedge demo``: train, convert, serve the pages, federate, release, then
keep serving until Ctrl-C (see :mod:`fedge.cli.demo_loop`)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

import click

from fedge.cli import options
from fedge.errors import FedgeError


@click.command()
@click.option(
    "--work",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs"),
    show_default=True,
    help="Where the model, its bundle and the demo's server data go (reused when there).",
)
@options.rounds(default=5)
@options.devices(default=20)
@options.per_round(default=10)
@options.host(default="127.0.0.1")
@options.port(default=8750)
@click.option("--no-browser", is_flag=True, help="Do not open the dashboard in a browser.")
@click.option(
    "--exit",
    "exit_after",
    is_flag=True,
    help="Stop once the fleet and its release are done, instead of serving until Ctrl-C.",
)
def demo(
    work: Path,
    rounds: int,
    devices: int,
    per_round: int,
    host: str,
    port: int,
    no_browser: bool,
    exit_after: bool,
) -> None:
    """Everything end to end: the reference model, its verified bundle, the server with
    the browser demo and the dashboard, a simulated fleet, a release and its canary."""
    from fedge.cli.demo_loop import DemoConfig, run_demo

    config = DemoConfig(
        work=work,
        rounds=rounds,
        devices=devices,
        per_round=per_round,
        host=host,
        port=port,
        open_browser=not no_browser,
        keep_serving=not exit_after,
    )
    stop = threading.Event()

    def on_terminate(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # SIGTERM stops the demo as Ctrl-C does

    previous = signal.signal(signal.SIGTERM, on_terminate)
    try:
        run_demo(config, click.echo, stop)
    except KeyboardInterrupt:
        click.echo("stopped")
    except FedgeError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        signal.signal(signal.SIGTERM, previous)
