"""``fedge demo``: train, convert, serve the pages, federate, release, then
keep serving until Ctrl-C (see :mod:`fedge.cli.demo_loop`)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

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
# Both flags turn a DemoConfig field off, so each sets that field directly.
@click.option(
    "--no-browser",
    "open_browser",
    is_flag=True,
    flag_value=False,
    default=True,
    help="Do not open the dashboard in a browser.",
)
@click.option(
    "--exit",
    "keep_serving",
    is_flag=True,
    flag_value=False,
    default=True,
    help="Stop once the fleet and its release are done, instead of serving until Ctrl-C.",
)
def demo(**settings: Any) -> None:
    """Everything end to end: the reference model, its verified bundle, the server with
    the browser demo and the dashboard, a simulated fleet, a release and its canary."""
    from fedge.cli.demo_loop import DemoConfig, run_demo

    config = options.build_record(DemoConfig, settings)
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
