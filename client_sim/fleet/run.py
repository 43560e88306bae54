"""``run_fleet``: a fleet run on the backend its config names.

``thread`` (:mod:`fedge.client_sim.fleet.threads`): the devices in this
process; ``ray`` (:mod:`fedge.client_sim.fleet.ray.backend`): in Ray actors.
Either way the same rounds (:mod:`fedge.client_sim.fleet.rounds`) and report.
"""

from __future__ import annotations

from fedge.client_sim.fleet.config import FleetConfig
from fedge.client_sim.fleet.model_source import Say
from fedge.client_sim.fleet.ray.backend import run_ray_fleet
from fedge.client_sim.fleet.threads import run_thread_fleet
from fedge.client_sim.report.fleet_report import FleetReport, Progress
from fedge.errors import ConfigError


def run_fleet(
    config: FleetConfig, progress: Progress | None = None, say: Say = lambda _: None
) -> FleetReport:
    """Prepare the model and server, split the data, run the rounds."""
    if config.data is not None and config.model is None and config.server_url is None:
        raise ConfigError("--data needs the model it is for: give --model (or --server)")
    if config.backend == "ray":
        return run_ray_fleet(config, progress, say)
    if config.backend != "thread":
        raise ConfigError(f"unknown backend {config.backend!r}: thread or ray")
    return run_thread_fleet(config, progress, say)
