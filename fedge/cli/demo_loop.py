"""``fedge demo``: the whole loop on one machine, for a first look.

1. the reference model: ``<work>/model.keras``, trained on the public 30% of
   the digits unless it is already there;
2. its bundle: ``<work>/bundle`` (TFLite, TF.js, Core ML, parity checked),
   converted unless a verified one with a TF.js model is already there;
3. the server with the browser pages, on a fresh data directory
   (``<work>/demo-server``), in this process;
4. a simulated fleet for a few rounds against it over HTTP, with live
   progress; after the last round the server cuts a release of the global
   model, the fleet's canary devices evaluate it on their own data and the
   server promotes it or rolls it back;
5. the addresses of the demo page and the dashboard; the server keeps
   serving (browsers can join rounds) until Ctrl-C, which stops everything.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fedge.errors import ConfigError, FedgeError

if TYPE_CHECKING:
    from fedge.client_sim.report.fleet_report import FleetReport

Say = Callable[[str], None]
SERVER_DIR = "demo-server"


@dataclass(frozen=True)
class DemoConfig:
    work: Path = Path("runs")
    rounds: int = 5
    devices: int = 20
    per_round: int = 10
    local_epochs: int = 2
    host: str = "127.0.0.1"
    port: int = 8750
    open_browser: bool = True
    # Keep serving after the fleet until Ctrl-C (False: stop when the fleet is done).
    keep_serving: bool = True
    seed: int = 0

    def validate(self) -> None:
        if self.rounds < 1 or self.devices < 1 or self.local_epochs < 1:
            raise ConfigError("--rounds, --devices and --local-epochs must be >= 1")
        if not 1 <= self.per_round <= self.devices:
            raise ConfigError(f"--per-round must be in 1..{self.devices} (the devices)")


def reference_model(work: Path, say: Say) -> Path:
    """The trained reference CNN: reused when ``<work>/model.keras`` exists."""
    path = work / "model.keras"
    if path.is_file():
        say(f"model: reusing {path}")
        return path
    from fedge.reference.data import PUBLIC_FRACTION
    from fedge.reference.train import TrainConfig, train_reference_model

    say(f"model: training the reference CNN on the public {PUBLIC_FRACTION:.0%} of the digits")
    result = train_reference_model(path, TrainConfig(public_fraction=PUBLIC_FRACTION))
    say(f"model: {path} (test accuracy {result.test_accuracy:.3f})")
    return path


def verified_bundle(model: Path, work: Path, say: Say) -> Path:
    """The model's bundle: reused when ``<work>/bundle`` verifies and has a
    TF.js model (the browser pages run it); converted otherwise."""
    from fedge.bundle.manifest import ManifestError, verify_bundle

    path = work / "bundle"
    try:
        manifest = verify_bundle(path)
        if "tfjs" in manifest.artifacts:
            say(f"bundle: reusing {path} (every file matches its sha256)")
            return path
        say(f"bundle: {path} has no TF.js model; converting again")
    except (ManifestError, OSError):
        pass
    from fedge.converters.bundle import convert
    from fedge.converters.options import ConvertOptions

    say(f"bundle: converting {model} to TFLite, TF.js and Core ML, each checked against Keras")
    convert(model, path, ConvertOptions(), force=True)
    return path


def run_demo(config: DemoConfig, say: Say, stop: threading.Event) -> None:
    """Everything in the module doc; returns once ``stop`` is set (Ctrl-C)
    or, without ``keep_serving``, when the fleet is done."""
    config.validate()
    config.work.mkdir(parents=True, exist_ok=True)
    bundle = verified_bundle(reference_model(config.work, say), config.work, say)
    from fedge.cli.console import make_console
    from fedge.client_sim.report.releases import release_lines, releases_table
    from fedge.server.http.app import create_app, shutdown
    from fedge.server.http.serve import BackgroundServer

    data_dir = config.work / SERVER_DIR
    shutil.rmtree(data_dir, ignore_errors=True)  # every demo starts from the deployed model
    logging.getLogger("fedge.server").setLevel(logging.WARNING)
    app = create_app(test_config=_server_settings(config, bundle, data_dir))
    try:
        server = BackgroundServer(app)
    except BaseException:
        shutdown(app)
        raise
    with server:
        say(f"server: {server.url} (data in {data_dir})")
        _announce(server.url, config.open_browser, say)
        report = _federate(config, server.url, server.context.admin_token)
        table = releases_table(report)
        if table is not None:
            make_console().print(table)
        for line in release_lines(report):
            say(line)
        _announce(server.url, False, say)
        if config.keep_serving:
            say("serving until Ctrl-C (browsers can join the rounds)")
            stop.wait()
        say("stopping")


def _server_settings(config: DemoConfig, bundle: Path, data_dir: Path) -> dict[str, object]:
    return {
        "data_dir": data_dir,
        "host": config.host,
        "port": config.port,
        "model": bundle,
        "seed": config.seed,
        "canary_min_reports": max(1, min(5, config.per_round // 2)),
        "rounds": {
            "target_participants": config.per_round,
            "min_participants": max(1, config.per_round // 2),
            "deadline_s": 60.0,
            "local_epochs": config.local_epochs,
        },
    }


def _federate(config: DemoConfig, url: str, admin_token: str) -> FleetReport:
    from fedge.cli.fleet_progress import run_with_progress
    from fedge.client_sim.fleet.config import FleetConfig

    fleet = FleetConfig(
        devices=config.devices,
        per_round=config.per_round,
        rounds=config.rounds,
        seed=config.seed,
        local_epochs=config.local_epochs,
        server_url=url,
        admin_token=admin_token,
        release_every=config.rounds,
        release_rollout=100.0,
        work_dir=config.work / "demo-fleet",
    )
    try:
        return run_with_progress(fleet)
    except ValueError as exc:
        raise FedgeError(str(exc)) from exc


def _announce(url: str, open_browser: bool, say: Say) -> None:
    say(f"demo page: {url}/")
    say(f"dashboard: {url}/dashboard")
    if open_browser:
        import webbrowser

        webbrowser.open(f"{url}/dashboard")
