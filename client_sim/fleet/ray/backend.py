"""``fedge simulate --backend ray``: the fleet's devices on a Ray cluster.

The same rounds as the thread backend (:mod:`fedge.client_sim.fleet.rounds`,
here driving :class:`~fedge.client_sim.fleet.ray.hosts.RayHosts`), with the
devices in :class:`~fedge.client_sim.fleet.ray.device_host.DeviceHost`
actors instead of the driver::

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

from dataclasses import replace

from fedge.client_sim.device.profiles import DeviceProfile, fleet_profiles
from fedge.client_sim.device.speeds import SpeedModel, with_speeds
from fedge.client_sim.fleet.config import FleetConfig
from fedge.client_sim.fleet.model_source import Say
from fedge.client_sim.fleet.preparation import prepare_model
from fedge.client_sim.fleet.ray.cluster import ray_cluster, require_ray
from fedge.client_sim.fleet.ray.device_host import HostConfig, TrainingRuntime
from fedge.client_sim.fleet.ray.hosts import HostPlan, RayHosts
from fedge.client_sim.fleet.rounds import run_rounds
from fedge.client_sim.report.fleet_report import FleetReport, Progress
from fedge.errors import ConfigError


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
    with ray_cluster(where) as cluster, prepare_model(config, say) as (model, data):
        config = replace(config, per_round=model.per_round)
        n = len(data.devices)
        profiles = profiles or with_speeds(
            fleet_profiles(n, config.dropout, config.crash, config.faults),
            SpeedModel(config.speed_spread),
            config.seed,
        )
        if len(profiles) != n:
            raise ConfigError(f"{len(profiles)} device profiles for {n} devices")
        plan = HostPlan.of(n, cluster, config.ray_hosts, config.workers)
        say(f"starting {plan.hosts} device hosts on Ray and enrolling {n} devices")
        hosts = RayHosts.start(
            plan,
            HostConfig(
                model.url,
                config.seed,
                f"sim-{config.runtime}",
                plan.threads_per_host,
                model.spec.matching(config.local_state),
            ),
            TrainingRuntime.of_bundle(
                model.bundle, model.manifest, model.objective, config.runtime
            ),
            data.devices,
            profiles,
        )
        test, partition = data.test, data.partition
        del data  # the devices' data lives in the hosts from now on
        try:
            return run_rounds(config, model, hosts, test, partition, progress)
        finally:
            hosts.close()
