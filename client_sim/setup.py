"""Everything a fleet needs before its first round: a bundle with the TFLite
training artifact, a server (embedded unless ``server_url`` is given), and
an observer client that reads rounds and checkpoints."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedge.client_sim.client import FedgeClient
from fedge.client_sim.trainers import KerasTrainer, TfliteTrainer, Trainer
from fedge.client_sim.transport import HttpTransport
from fedge.manifest import verify_bundle
from fedge.update_codec import Weights
from fedge.weight_spec import ModelSpec

if TYPE_CHECKING:
    from fedge.client_sim.fleet import FleetConfig


@dataclass
class FleetModel:
    url: str
    bundle: Path
    spec: ModelSpec
    observer: FedgeClient
    runtime: str
    keras_model: Any

    def trainer(self, runtime: str | None = None) -> Trainer:
        kind = runtime or self.runtime
        if kind == "keras":
            return KerasTrainer(self.keras_model)
        training = verify_bundle(self.bundle).artifact("tflite")["training"]
        if training["weight_keys"] != list(self.spec.train_keys):
            raise ValueError(
                f"{self.bundle}: the training artifact's weight keys are not the manifest's"
            )
        return TfliteTrainer(self.bundle / training["path"], self.spec)

    def get_json(self, path: str) -> Any:
        return self.observer.transport.request("GET", path).json()

    def current_round_id(self, timeout_s: float = 60.0) -> int:
        """The round in progress; waits while the server has none (its round
        step failing, say) rather than failing the fleet."""
        deadline = time.monotonic() + timeout_s
        while True:
            reply = self.observer.transport.request("GET", "/v1/rounds/current")
            if reply.status == 200:
                return int(reply.json()["round_id"])
            if time.monotonic() > deadline:
                raise RuntimeError(f"no round in progress after {timeout_s:.0f} s: {reply.json()}")
            time.sleep(0.2)

    def checkpoint(self, checkpoint_id: str) -> Weights:
        return self.observer.checkpoint(checkpoint_id).weights


def build_bundle(out: Path, seed: int, smooth_model: bool = False) -> Path:
    """The reference CNN (or its smooth twin), initialised from the seed, as a TFLite bundle."""
    import tensorflow as tf

    from fedge.converters.bundle import convert
    from fedge.converters.options import ConvertOptions
    from fedge.model import build_reference_model

    tf.keras.utils.set_random_seed(seed)
    model_path = out / "initial.keras"
    build_reference_model(smooth=smooth_model).save(model_path)
    bundle = out / "bundle"
    convert(model_path, bundle, ConvertOptions(targets=("tflite",), verify=False, seed=seed))
    return bundle


@contextmanager
def prepare_model(config: FleetConfig) -> Iterator[FleetModel]:
    import tensorflow as tf

    with ExitStack() as stack:
        work = config.work_dir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="fedge-sim-"))
        )
        work.mkdir(parents=True, exist_ok=True)
        bundle = build_bundle(work, config.seed, config.smooth_model)
        manifest = verify_bundle(bundle)
        keras_model = tf.keras.models.load_model(
            bundle / manifest.artifact("keras")["entry"], compile=False
        )
        if config.server_url is None:
            url = stack.enter_context(_embedded_server(config, bundle, work)).url
        else:
            url = config.server_url
        observer = FedgeClient(HttpTransport(url), seed=config.seed - 1)
        observer.enrol(platform="observer")
        stack.callback(observer.transport.close)
        yield FleetModel(
            url=url,
            bundle=bundle,
            spec=manifest.weights,
            observer=observer,
            runtime=config.runtime,
            keras_model=keras_model,
        )


@contextmanager
def _embedded_server(config: FleetConfig, bundle: Path, work: Path) -> Iterator[Any]:
    from fedge.server.app import create_app
    from fedge.server.serve import BackgroundServer

    minimum = config.min_participants or max(1, config.per_round // 2)
    app = create_app(
        test_config={
            "data_dir": work / "server",
            "port": 0,
            "model": bundle,
            "strategy": config.strategy,
            "seed": config.seed,
            "threads": max(4, config.workers),
            "rounds": {
                "target_participants": config.per_round,
                "min_participants": minimum,
                "deadline_s": config.deadline_s,
                "over_selection": config.over_selection,
                "local_epochs": config.local_epochs,
                "batch_size": config.batch_size,
                "learning_rate": config.learning_rate,
            },
        }
    )
    # The fleet reports per round; the server's per-request log would drown it.
    logging.getLogger("fedge.server").setLevel(logging.WARNING)
    server = BackgroundServer(app)
    try:
        yield server
    finally:
        server.stop()
