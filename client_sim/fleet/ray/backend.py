"""``fedge simulate --backend ray``: the fleet's devices on a Ray cluster.

The same rounds as the thread backend (:mod:`fedge.client_sim.fleet.threads`),
with the devices in :class:`~fedge.client_sim.fleet.ray.device_host.DeviceHost`
actors (:mod:`fedge.client_sim.fleet.ray.hosts`) instead of the driver::

    driver (this process)                 Ray actors, anywhere in the cluster
    ──────────────────────                ─────────────────────────────────────
    prepare the model, the server  ──>    DeviceHost k: devices i with i % hosts == k
    split the data                        (data, profile, personalised model,
    each round:                            counters, HTTP client each)
      the devices due, shuffled    ──>    step(order within the host, round id)
      until the server closes it   <──    outcomes          │ HTTP, safetensors
      evaluate the global model                             v
                                          the server (embedded, or --server URL)

The driver holds only the global test split, the global weights and the
outcomes it is told; device state lives and stays in the hosts. With the
same seeds a device behaves the same in either backend (same data, same
profile draws, same batches), so a fleet whose selection does not depend
on timing (every device in every round, say) gives the same global weights.
Releases (``--release-every``) are for the thread backend only, for now.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterable

from fedge.client_sim.device.profiles import DeviceProfile, fleet_profiles
from fedge.client_sim.device.simulated import RoundOutcome, evaluate
from fedge.client_sim.device.trainers import Trainer
from fedge.client_sim.fleet.config import FleetConfig
from fedge.client_sim.fleet.model_source import Say
from fedge.client_sim.fleet.pacing import DevicePacing, RoundWatch, run_round_passes
from fedge.client_sim.fleet.preparation import FleetModel, prepare_model
from fedge.client_sim.fleet.ray.cluster import ray_cluster, require_ray
from fedge.client_sim.fleet.ray.device_host import HostConfig, TrainingRuntime
from fedge.client_sim.fleet.ray.hosts import HostPlan, RayHosts
from fedge.client_sim.fleet.threads import fleet_data
from fedge.client_sim.report.fleet_report import (
    FleetReport,
    Progress,
    RoundReport,
    mean_over_devices,
    personalised_scores,
    shown_config,
    shown_selections,
)
from fedge.client_sim.report.fleet_report import Scores as ModelScores
from fedge.errors import ConfigError
from fedge.task.examples import Examples
from fedge.wire.update_codec import Weights


def run_ray_fleet(
    config: FleetConfig,
    progress: Progress | None = None,
    say: Say = lambda _: None,
    profiles: list[DeviceProfile] | None = None,
) -> FleetReport:
    """Run the fleet with its devices on Ray. ``profiles``: one per device
    (default: :func:`~fedge.client_sim.device.profiles.fleet_profiles` of the config)."""
    if config.release_every is not None:
        raise ConfigError("--release-every is not supported with --backend ray yet")
    require_ray()
    where = config.ray_address
    say(f"joining the Ray cluster at {where}" if where else "starting a local Ray")
    with ray_cluster(where) as cluster, prepare_model(config, say) as model:
        say("splitting the data over the devices")
        data = fleet_data(config, model)
        n = len(data.devices)
        if config.per_round > n:
            raise ConfigError(f"{config.per_round} per round > {n} devices")
        profiles = profiles or fleet_profiles(n, config.dropout, config.crash, config.faults)
        if len(profiles) != n:
            raise ConfigError(f"{len(profiles)} device profiles for {n} devices")
        plan = HostPlan.of(n, cluster, config.ray_hosts, config.workers)
        say(f"starting {plan.hosts} device hosts on Ray and enrolling {n} devices")
        hosts = RayHosts.start(
            plan,
            HostConfig(model.url, config.seed, f"sim-{config.runtime}", plan.threads_per_host),
            TrainingRuntime.of_bundle(
                model.bundle, model.manifest, model.objective, config.runtime
            ),
            data.devices,
            profiles,
        )
        test, partition = data.test, data.partition
        del data  # the devices' data lives in the hosts from now on
        try:
            return _run(config, model, test, partition, hosts, progress)
        finally:
            hosts.stop()


def _run(
    config: FleetConfig,
    model: FleetModel,
    test: Examples,
    partition: str,
    hosts: RayHosts,
    progress: Progress | None,
) -> FleetReport:
    evaluator = model.trainer()
    order_rng = random.Random(config.seed)  # the thread backend's order, draw for draw
    reports: list[RoundReport] = []
    selected: dict[int, list[int]] = {}
    contributed = [0] * hosts.devices
    # Round 0: the deployed model reaches every device, which starts from it.
    weights = model.current_weights()
    deployed = _scores(evaluator, weights, test, hosts, model)
    pacing = DevicePacing(hosts.devices)
    watch = RoundWatch(model.url)
    try:
        for _ in range(config.rounds):
            report, outcomes, weights = _one_round(
                hosts, order_rng, model, evaluator, test, pacing, watch
            )
            reports.append(report)
            for outcome in outcomes:
                if outcome.status == "contributed" and outcome.round_id is not None:
                    selected.setdefault(outcome.round_id, []).append(outcome.device)
                    contributed[outcome.device] += 1
            if progress is not None:
                progress(report)
    finally:
        watch.close()
    final = _scores(evaluator, weights, test, hosts, model)
    personal = list(hosts.personal_scores(test).values())
    counters = hosts.counters()
    return FleetReport(
        config=shown_config(config),
        model={"name": model.manifest.name, "bundle_id": model.bundle_id},
        metric=model.objective.metric,
        partition=partition,
        rounds=reports,
        selected=shown_selections(selected, reports[-1].round_id),
        scores={
            "deployed": deployed,
            "final": final,
            "personalised": personalised_scores(personal),
        },
        participation=contributed,
        # Uploads cut off and sent again, and devices lost with their host.
        crashes=counters.crashes + len(hosts.lost),
        retries=counters.retries,
        final_weights=weights,
    )


def _scores(
    evaluator: Trainer, weights: Weights, test: Examples, hosts: RayHosts, model: FleetModel
) -> ModelScores:
    """``weights`` offered to every live device (each adopts it if no worse), and scored."""
    return ModelScores(
        global_test=evaluate(evaluator, weights, test, model.objective),
        devices=mean_over_devices(list(hosts.offer_global(weights).values())),
    )


def _one_round(
    hosts: RayHosts,
    rng: random.Random,
    model: FleetModel,
    evaluator: Trainer,
    test: Examples,
    pacing: DevicePacing,
    watch: RoundWatch,
) -> tuple[RoundReport, list[RoundOutcome], Weights]:
    """One server round, paced as in the thread backend (see
    :mod:`fedge.client_sim.fleet.pacing`): the devices due ask for work until
    the round ends; between passes the driver waits on the round events."""
    started = time.perf_counter()
    before = hosts.counters()
    round_id = model.current_round_id()

    def step(order: list[int]) -> Iterable[RoundOutcome]:
        rng.shuffle(order)
        return hosts.step(order, round_id)

    outcomes, state = run_round_passes(
        round_id, pacing, watch, step, lambda: model.get_json(f"/v1/rounds/{round_id}")
    )
    rejects = Counter(o.detail for o in outcomes if o.status == "rejected")
    weights = model.checkpoint(state["result_checkpoint"] or state["base_checkpoint"])
    after = hosts.counters()
    report = RoundReport(
        round_id=round_id,
        state=state["state"],
        metrics=evaluate(evaluator, weights, test, model.objective),
        participants=int(state["updates"]),
        dropouts=sum(o.status == "dropout" for o in outcomes),
        rejects=dict(rejects),
        bytes_up=after.bytes_up - before.bytes_up,
        bytes_down=after.bytes_down - before.bytes_down,
        seconds=time.perf_counter() - started,
    )
    return report, outcomes, weights
