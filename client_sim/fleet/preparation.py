"""Everything a fleet needs before its first round: the model's bundle (with
its TFLite training artifact), a server (embedded unless ``server_url`` is
given), and an observer client that reads rounds and checkpoints.

Where the bundle comes from:

* ``model`` (a bundle directory, or a Keras model that is converted first):
  the user's model; the rounds start from its weights;
* ``server_url`` and no ``model``: the server's own bundle, downloaded and
  verified, so devices and server cannot disagree (a server started from a
  Keras file or the built-in reference weights has none: then the
  reference CNN's, checked against the server's spec);
* neither: the reference task's hybrid story. The team trains the digits
  CNN centrally on the public part of the data and deploys it
  (``public_fraction`` 0: a seeded random CNN instead).

Whatever the source, its weight spec must be the server's: a mismatch is
refused before any device enrols, naming each difference.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedge.bundle.manifest import Manifest
from fedge.client_sim.data.federated_split import FederatedData
from fedge.client_sim.device.bundle_download import download_bundle
from fedge.client_sim.device.client import FedgeClient
from fedge.client_sim.device.trainers import KerasTrainer, TfliteTrainer, Trainer
from fedge.client_sim.device.transport import HttpTransport
from fedge.client_sim.fleet.config import FleetConfig
from fedge.client_sim.fleet.device_data import fleet_data
from fedge.client_sim.fleet.model_source import (
    Say,
    build_bundle,
    deployed_bundle,
    training_manifest,
    user_bundle,
)
from fedge.client_sim.fleet.round_target import fleet_round_target, server_round_target
from fedge.converters.targets.training_optimizer import TrainingOptimizer
from fedge.errors import ConfigError
from fedge.task.objective import Objective
from fedge.wire.update_codec import Weights
from fedge.wire.weight_spec import ModelSpec


class ModelMismatchError(ConfigError):
    """The fleet's model is not the one the server federates."""


@dataclass
class FleetModel:
    url: str
    bundle: Path
    bundle_id: str
    manifest: Manifest
    objective: Objective
    observer: FedgeClient
    runtime: str
    work: Path  # the fleet's working directory (release downloads go under it)
    per_round: int  # the updates that close a round, on the server the fleet uses
    # The server's admin token, for cutting releases: the embedded server's
    # own, or the one given with --server (None: not given).
    admin_token: str | None = field(default=None, repr=False)

    @property
    def spec(self) -> ModelSpec:
        return self.manifest.weights

    def trainer(self, runtime: str | None = None) -> Trainer:
        training = self.manifest.artifact("tflite")["training"]
        if (runtime or self.runtime) == "keras":
            import tensorflow as tf

            from fedge.converters.targets.training_loss import TrainingLoss

            entry = self.bundle / self.manifest.artifact("keras")["entry"]
            model = tf.keras.models.load_model(entry, compile=False)
            loss = TrainingLoss.from_record(training)
            return KerasTrainer(model, loss.keras(), loss.optimizer)
        optimizer = TrainingOptimizer.from_record(training)
        return TfliteTrainer(self.bundle / training["path"], self.spec, optimizer)

    def get_json(self, path: str) -> Any:
        return self.observer.transport.request("GET", path).json()

    def current_round_id(self, timeout_s: float = 60.0) -> int:
        """The round in progress; waits while the server has none."""
        return int(_current_round(self.observer, timeout_s)["round_id"])

    def current_weights(self) -> Weights:
        """The server's current global model (round 0: the deployed one)."""
        checkpoint = self.get_json(f"/v1/models/{self.manifest.name}")["current_checkpoint"]
        return self.checkpoint(checkpoint)

    def checkpoint(self, checkpoint_id: str) -> Weights:
        return self.observer.checkpoint(checkpoint_id).weights


@contextmanager
def prepare_model(
    config: FleetConfig, say: Say = lambda _: None
) -> Iterator[tuple[FleetModel, FederatedData]]:
    """The model, its server and the devices' data. The data is split
    before an embedded server starts: its round target is sized to the
    fleet (:mod:`.round_target`); a running server's is read from it."""
    with ExitStack() as stack:
        work = config.work_dir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="fedge-sim-"))
        )
        work.mkdir(parents=True, exist_ok=True)
        bundle = _local_bundle(config, work, say)
        admin_token = config.admin_token
        data: FederatedData | None = None
        if config.server_url is None:
            assert bundle is not None  # without a server there is always a local model
            data = _split(config, bundle, say)
            target = fleet_round_target(config.per_round, len(data.devices))
            say("starting the embedded server")
            server = stack.enter_context(
                _embedded_server(config, bundle, work, target.per_round, len(data.devices))
            )
            url, admin_token = server.url, server.context.admin_token
        else:
            url = config.server_url
        observer = FedgeClient(HttpTransport(url), seed=config.seed - 1)
        stack.callback(observer.transport.close)
        observer.enrol(platform="observer")
        name, server_spec, bundle_id = _server_model(observer, url)
        if bundle is None:
            bundle = _server_bundle(observer, bundle_id, work, config.seed, say)
        verified, objective = training_manifest(bundle)
        _check_same_model(verified.manifest, bundle, name, server_spec, url)
        if data is None:
            data = _split(config, bundle, say)
            server_target = _current_round(observer)["config"]["target_participants"]
            target = server_round_target(config.per_round, server_target, len(data.devices), url)
        if target.notice is not None:
            say(f"warning: {target.notice}")
        model = FleetModel(
            url=url,
            bundle=bundle,
            bundle_id=verified.bundle_id,
            manifest=verified.manifest,
            objective=objective,
            observer=observer,
            runtime=config.runtime,
            work=work,
            per_round=target.per_round,
            admin_token=admin_token,
        )
        # Handed over, not kept in this frame: the Ray backend drops the
        # devices' data once its hosts hold it.
        handed = [data]
        del data
        yield model, handed.pop()


def _split(config: FleetConfig, bundle: Path, say: Say) -> FederatedData:
    say("splitting the data over the devices")
    verified, objective = training_manifest(bundle)
    return fleet_data(config, verified.manifest, objective)


def _current_round(observer: FedgeClient, timeout_s: float = 60.0) -> dict[str, Any]:
    """The round in progress, as the server shows it; waits while the
    server has none (its round step failing, say) rather than failing."""
    deadline = time.monotonic() + timeout_s
    while True:
        reply = observer.transport.request("GET", "/v1/rounds/current")
        if reply.status == 200:
            round_: dict[str, Any] = reply.json()
            return round_
        if time.monotonic() > deadline:
            raise RuntimeError(f"no round in progress after {timeout_s:.0f} s: {reply.json()}")
        time.sleep(0.2)


def _local_bundle(config: FleetConfig, work: Path, say: Say) -> Path | None:
    if config.model is not None:
        return user_bundle(config.model, work, config.seed, say)
    if config.server_url is not None:
        return None
    if config.public_fraction > 0:
        return deployed_bundle(work, config.seed, config.public_fraction, say)
    say("building the reference CNN from its seed")
    return build_bundle(work, config.seed, config.smooth_model)


def _server_model(observer: FedgeClient, url: str) -> tuple[str, ModelSpec, str | None]:
    """(name, weight spec, bundle id or None) of the model the server federates."""
    listing = observer.transport.request("GET", "/v1/models").json()
    name = listing["models"][0]["name"]
    model = observer.transport.request("GET", f"/v1/models/{name}").json()
    return name, ModelSpec.from_json(model["weights"]), model.get("bundle_id")


def _server_bundle(
    observer: FedgeClient, bundle_id: str | None, work: Path, seed: int, say: Say
) -> Path:
    if bundle_id is not None:
        say(f"downloading the server's bundle {bundle_id[:12]}")
        return download_bundle(observer, bundle_id, work / "server-bundle")
    # A server started without a bundle federates the reference CNN (or a
    # Keras file's model, which the spec check below tells apart).
    say("the server has no bundle: building the reference CNN to check against it")
    return build_bundle(work, seed)


def _check_same_model(
    manifest: Manifest, bundle: Path, name: str, server_spec: ModelSpec, url: str
) -> None:
    differences = manifest.weights.differences(server_spec, "in the fleet's model", "on the server")
    if name != manifest.name or differences:
        shown = "; ".join(differences[:6]) + ("; ..." if len(differences) > 6 else "")
        raise ModelMismatchError(
            f"the server at {url} federates {name!r}, the fleet's model ({bundle}) is "
            f"{manifest.name!r}"
            + (f"; their weights differ: {shown}" if differences else "")
            + ". Give --model the server's model, or leave --model out to take the server's"
        )


@contextmanager
def _embedded_server(
    config: FleetConfig, bundle: Path, work: Path, per_round: int, devices: int
) -> Iterator[Any]:
    from fedge.server.devices.rate_limits import DEFAULTS, RateLimit
    from fedge.server.http.app import create_app
    from fedge.server.http.serve import BackgroundServer

    # The fleet reports per round; the server's per-request log would drown it.
    logging.getLogger("fedge.server").setLevel(logging.WARNING)
    minimum = config.min_participants or max(1, per_round // 2)
    # The whole fleet enrols from this machine's address at once: the
    # per-address enrolment burst is at least the fleet's size (and the observer).
    enrol = RateLimit.parse("enrol", DEFAULTS["enrol"])
    assert enrol is not None
    rate_limits = {"enrol": f"{enrol.rate_per_s}/s:{max(devices + 16, int(enrol.burst))}"}
    app = create_app(
        test_config={
            "canary_min_reports": config.canary_min_reports,  # None: the server's default
            "health_window_s": config.health_window_s,
            "data_dir": work / "server",
            "port": 0,
            "model": bundle,
            "strategy": config.strategy,
            "device_weighting": config.device_weighting,  # None: the server's default
            "local_state": config.local_state,
            "seed": config.seed,
            "threads": max(4, config.workers),
            "rate_limits": rate_limits,
            "rounds": {
                "target_participants": per_round,
                "min_participants": minimum,
                "deadline_s": config.deadline_s,
                "over_selection": config.over_selection,
                "local_epochs": config.local_epochs,
                "batch_size": config.batch_size,
                "learning_rate": config.learning_rate,
            },
            "aggregation": config.aggregation_settings(per_round),
            **config.server_settings,
        }
    )
    server = BackgroundServer(app)
    try:
        yield server
    finally:
        server.stop()
