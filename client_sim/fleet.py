"""A fleet of simulated devices running federated rounds against a server.

The server is a real one: at ``--server URL``, or embedded (the same app
on a background thread, real HTTP on loopback). Devices run concurrently
on a thread pool; each round every available device asks for work until
the round closes (target reached, or deadline with quorum).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedge.client_sim.client import FedgeClient
from fedge.client_sim.device import RoundOutcome, SimDevice, accuracy
from fedge.client_sim.profiles import fleet_profiles
from fedge.client_sim.setup import FleetModel, prepare_model
from fedge.client_sim.trainers import TrainerPool
from fedge.client_sim.transport import HttpTransport
from fedge.data import load_task
from fedge.partition import PartitionConfig, partition
from fedge.update_codec import Weights


@dataclass(frozen=True)
class FleetConfig:
    devices: int = 20
    per_round: int = 10
    rounds: int = 10
    alpha: float = 0.5
    min_examples: int = 4
    seed: int = 0
    local_epochs: int = 1
    batch_size: int = 16
    learning_rate: float = 0.05
    runtime: str = "tflite"
    dropout: float = 0.0
    crash: float = 0.0
    faults: dict[str, int] = field(default_factory=dict)
    workers: int = 8
    deadline_s: float = 20.0
    over_selection: float = 1.0
    min_participants: int | None = None
    server_url: str | None = None
    strategy: str = "fedavg"
    work_dir: Path | None = None
    # The reference CNN's smooth twin (GELU, average pooling) instead of the
    # product CNN: for comparing engines (see fedge.model.build_reference_model).
    smooth_model: bool = False


@dataclass
class RoundReport:
    round_id: int
    state: str
    global_accuracy: float
    participants: int
    dropouts: int
    rejects: dict[str, int]
    bytes_up: int
    bytes_down: int
    seconds: float


@dataclass
class FleetReport:
    config: dict[str, Any]
    rounds: list[RoundReport]
    selected: dict[int, list[int]]
    global_accuracy_on_devices: float
    personal_accuracy_on_devices: float
    participation: list[int]
    crashes: int
    retries: int
    final_weights: Weights = field(repr=False, default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "rounds": [vars(r) for r in self.rounds],
            "selected": {str(k): v for k, v in self.selected.items()},
            "global_accuracy_on_devices": self.global_accuracy_on_devices,
            "personal_accuracy_on_devices": self.personal_accuracy_on_devices,
            "participation": self.participation,
            "crashes": self.crashes,
            "retries": self.retries,
        }


Progress = Callable[[RoundReport], None]


def run_fleet(config: FleetConfig, progress: Progress | None = None) -> FleetReport:
    task = load_task(seed=config.seed)
    parts = partition(
        task.train.y,
        PartitionConfig(
            num_devices=config.devices,
            alpha=config.alpha,
            seed=config.seed,
            min_examples=config.min_examples,
        ),
    )
    with prepare_model(config) as model:
        return _run(config, model, task, parts, progress)


def _run(
    config: FleetConfig, model: FleetModel, task: Any, parts: Any, progress: Progress | None
) -> FleetReport:
    profiles = fleet_profiles(config.devices, config.dropout, config.crash, config.faults)
    trainers = TrainerPool(model.trainer, min(config.workers, config.devices))
    devices = []
    for index in range(config.devices):
        client = FedgeClient(HttpTransport(model.url), seed=config.seed + index)
        client.enrol(platform=f"sim-{config.runtime}")
        devices.append(
            SimDevice(
                index,
                parts.device_data(index, task.train),
                trainers,
                client,
                profiles[index],
                config.seed,
            )
        )
    evaluator = model.trainer()
    order_rng = random.Random(config.seed)
    reports: list[RoundReport] = []
    selected: dict[int, list[int]] = {}
    weights: Weights = {}
    try:
        with ThreadPoolExecutor(max_workers=config.workers) as pool:
            for _ in range(config.rounds):
                report, outcomes, weights = _one_round(
                    devices, pool, order_rng, model, evaluator, task
                )
                reports.append(report)
                # A device that asks after a round closed joins the next one
                # in the same pass: file each contribution under its own round.
                for outcome in outcomes:
                    if outcome.status == "contributed" and outcome.round_id is not None:
                        selected.setdefault(outcome.round_id, []).append(outcome.device)
                if progress is not None:
                    progress(report)
        # Each device scores the final global model on its own data and
        # adopts it if it is no worse than its personalised one.
        global_on_devices = [d.offer_global(weights) for d in devices]
        personal = [d.personal_accuracy for d in devices]
    finally:
        for device in devices:
            device.client.transport.close()
    return FleetReport(
        config={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(config).items()},
        rounds=reports,
        selected={
            r: sorted(selected.get(r, [])) for r in sorted(selected) if r <= reports[-1].round_id
        },
        global_accuracy_on_devices=float(np.nanmean(global_on_devices)),
        personal_accuracy_on_devices=float(np.nanmean(personal)),
        participation=[d.stats.contributed for d in devices],
        crashes=sum(d.stats.crashes for d in devices),
        retries=sum(d.client.retries for d in devices),
        final_weights=weights,
    )


def _one_round(
    devices: list[SimDevice],
    pool: ThreadPoolExecutor,
    rng: random.Random,
    model: FleetModel,
    evaluator: Any,
    task: Any,
) -> tuple[RoundReport, list[RoundOutcome], Weights]:
    started = time.perf_counter()
    up0 = sum(d.client.bytes_up for d in devices)
    down0 = sum(d.client.bytes_down for d in devices)
    round_id = model.current_round_id()
    outcomes: list[RoundOutcome] = []
    while True:
        order = list(range(len(devices)))
        rng.shuffle(order)
        outcomes.extend(pool.map(lambda i: devices[i].step(), order))
        state = model.get_json(f"/v1/rounds/{round_id}")
        if state["state"] not in ("open", "closing"):
            break
        time.sleep(0.2)
    rejects = Counter(o.detail for o in outcomes if o.status == "rejected")
    weights = model.checkpoint(state["result_checkpoint"] or state["base_checkpoint"])
    report = RoundReport(
        round_id=round_id,
        state=state["state"],
        global_accuracy=accuracy(evaluator, weights, task.test.x, task.test.y),
        participants=int(state["updates"]),
        dropouts=sum(o.status == "dropout" for o in outcomes),
        rejects=dict(rejects),
        bytes_up=sum(d.client.bytes_up for d in devices) - up0,
        bytes_down=sum(d.client.bytes_down for d in devices) - down0,
        seconds=time.perf_counter() - started,
    )
    return report, outcomes, weights
