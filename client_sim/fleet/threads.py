"""A fleet of simulated devices running federated rounds against a server.

The server is a real one: at ``--server URL``, or embedded (the same app
on a background thread, real HTTP on loopback). Devices run concurrently
on a bounded thread pool, sharing its keep-alive connections; each round
the devices the server asked to come (:mod:`fedge.client_sim.fleet.pacing`)
ask for work until the round closes (target reached, or deadline with
quorum), and the rest of the fleet waits. Between rounds
the devices follow the server's releases, and the fleet cuts one every
``release_every`` rounds (:mod:`fedge.client_sim.fleet.releases`).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from fedge.client_sim.data.federated_split import FederatedData, SplitConfig
from fedge.client_sim.data.fleet_data import reference_data, user_data
from fedge.client_sim.device.client import FedgeClient
from fedge.client_sim.device.profiles import fleet_profiles
from fedge.client_sim.device.simulated import RoundOutcome, SimDevice, evaluate
from fedge.client_sim.device.trainers import Trainer, TrainerPool
from fedge.client_sim.device.transport import HttpTransport, shared_session
from fedge.client_sim.fleet.config import DEFAULT_DEVICES, FleetConfig
from fedge.client_sim.fleet.model_source import Say
from fedge.client_sim.fleet.pacing import DevicePacing, RoundWatch, run_round_passes
from fedge.client_sim.fleet.preparation import FleetModel, prepare_model
from fedge.client_sim.fleet.releases import FleetReleases
from fedge.client_sim.report.fleet_report import (
    FleetReport,
    Progress,
    RoundReport,
    Scores,
    mean_over_devices,
    personalised_scores,
    shown_config,
    shown_selections,
)
from fedge.errors import ConfigError
from fedge.task.examples import Examples
from fedge.wire.update_codec import Weights


def run_fleet(
    config: FleetConfig, progress: Progress | None = None, say: Say = lambda _: None
) -> FleetReport:
    """Prepare the model and server, split the data, run the rounds."""
    if config.data is not None and config.model is None and config.server_url is None:
        raise ConfigError("--data needs the model it is for: give --model (or --server)")
    if config.backend == "ray":
        from fedge.client_sim.fleet.ray.backend import run_ray_fleet

        return run_ray_fleet(config, progress, say)
    if config.backend != "thread":
        raise ConfigError(f"unknown backend {config.backend!r}: thread or ray")
    with prepare_model(config, say) as model:
        say("splitting the data over the devices")
        data = fleet_data(config, model)
        return _run(config, model, data, progress)


def fleet_data(config: FleetConfig, model: FleetModel) -> FederatedData:
    input_name = model.manifest.inputs[0].name
    if config.data is None:
        from fedge.reference.weights import is_reference_model

        if not (config.smooth_model or is_reference_model(model.manifest.name, model.spec)):
            raise ConfigError(
                f"the model {model.manifest.name!r} is not the reference digits CNN: "
                "give its devices' data with --data"
            )
        return reference_data(
            config.devices or DEFAULT_DEVICES,
            config.alpha,
            config.seed,
            config.min_examples,
            input_name,
            config.public_fraction,
            config.data_shards,
        )
    split = SplitConfig(
        num_devices=config.devices,
        alpha=config.alpha,
        test_fraction=config.test_fraction,
        holdout_fraction=config.holdout_fraction,
        min_examples=config.min_examples,
        seed=config.seed,
    )
    return user_data(config.data, model.manifest, model.objective, split)


def _run(
    config: FleetConfig, model: FleetModel, data: FederatedData, progress: Progress | None
) -> FleetReport:
    n = len(data.devices)
    if config.per_round > n:
        raise ConfigError(f"{config.per_round} per round > {n} devices")
    profiles = fleet_profiles(n, config.dropout, config.crash, config.faults)
    trainers = TrainerPool(model.trainer, min(config.workers, n))
    # Devices take turns on the worker pool: they share its keep-alive connections.
    session = shared_session(config.workers + 4)
    devices = []
    for index in range(n):
        client = FedgeClient(HttpTransport(model.url, session=session), seed=config.seed + index)
        client.enrol(platform=f"sim-{config.runtime}")
        devices.append(
            SimDevice(
                index,
                data.devices[index],
                trainers,
                client,
                profiles[index],
                config.seed,
                model.objective,
            )
        )
    evaluator = model.trainer()
    order_rng = random.Random(config.seed)
    pacing = DevicePacing(n)
    watch = RoundWatch(model.url)
    reports: list[RoundReport] = []
    selected: dict[int, list[int]] = {}
    try:
        # Round 0: the deployed model reaches every device, which starts from it.
        weights = model.current_weights()
        deployed = _scores(evaluator, weights, data.test, devices)
        with ThreadPoolExecutor(max_workers=config.workers) as pool:
            releases = FleetReleases(model, config, devices, pool)
            releases.start()
            for _ in range(config.rounds):
                report, outcomes, weights = _one_round(
                    devices, pool, order_rng, model, evaluator, data.test, pacing, watch
                )
                reports.append(report)
                # File each contribution under the round that accepted it.
                for outcome in outcomes:
                    if outcome.status == "contributed" and outcome.round_id is not None:
                        selected.setdefault(outcome.round_id, []).append(outcome.device)
                if progress is not None:
                    progress(report)
                releases.after_round(len(reports))
            released = releases.report()
        # Each device scores the final global model on its own data and
        # adopts it if it is no worse than its personalised one.
        final = _scores(evaluator, weights, data.test, devices)
        personal = [d.personal_scores(data.test) for d in devices]
    finally:
        for device in devices:
            device.client.transport.close()
        session.close()
        watch.close()
    return FleetReport(
        config=shown_config(config),
        model={"name": model.manifest.name, "bundle_id": model.bundle_id},
        metric=model.objective.metric,
        partition=data.partition,
        rounds=reports,
        selected=shown_selections(selected, reports[-1].round_id),
        scores={
            "deployed": deployed,
            "final": final,
            "personalised": personalised_scores(personal),
        },
        participation=[d.stats.contributed for d in devices],
        crashes=sum(d.stats.crashes for d in devices),
        retries=sum(d.client.retries for d in devices),
        final_weights=weights,
        releases=released,
    )


def _scores(
    evaluator: Trainer, weights: Weights, test: Examples, devices: list[SimDevice]
) -> Scores:
    """``weights`` offered to every device (each adopts it if no worse), and scored."""
    objective = devices[0].objective
    return Scores(
        global_test=evaluate(evaluator, weights, test, objective),
        devices=mean_over_devices([d.offer_global(weights) for d in devices]),
    )


def _one_round(
    devices: list[SimDevice],
    pool: ThreadPoolExecutor,
    rng: random.Random,
    model: FleetModel,
    evaluator: Trainer,
    test: Examples,
    pacing: DevicePacing,
    watch: RoundWatch,
) -> tuple[RoundReport, list[RoundOutcome], Weights]:
    """One server round: the devices due (see :mod:`fedge.client_sim.fleet.pacing`)
    ask for work until the round ends; between passes the fleet waits on the
    round events, or on the first device whose retry time comes."""
    started = time.perf_counter()
    up0 = sum(d.client.bytes_up for d in devices)
    down0 = sum(d.client.bytes_down for d in devices)
    round_id = model.current_round_id()

    def step(order: list[int]) -> Iterable[RoundOutcome]:
        rng.shuffle(order)
        return pool.map(lambda i: devices[i].step(round_id), order)

    outcomes, state = run_round_passes(
        round_id, pacing, watch, step, lambda: model.get_json(f"/v1/rounds/{round_id}")
    )
    rejects = Counter(o.detail for o in outcomes if o.status == "rejected")
    weights = model.checkpoint(state["result_checkpoint"] or state["base_checkpoint"])
    report = RoundReport(
        round_id=round_id,
        state=state["state"],
        metrics=evaluate(evaluator, weights, test, devices[0].objective),
        participants=int(state["updates"]),
        dropouts=sum(o.status == "dropout" for o in outcomes),
        rejects=dict(rejects),
        bytes_up=sum(d.client.bytes_up for d in devices) - up0,
        bytes_down=sum(d.client.bytes_down for d in devices) - down0,
        seconds=time.perf_counter() - started,
    )
    return report, outcomes, weights
