"""``fedge simulate --aggregation async`` with the embedded server: the
fleet on the wall clock (:mod:`.free_run`), as asynchronous aggregation is
meant to run, not round by round.

The round-by-round driver (:mod:`.rounds`) asks the devices a round needs
and waits for them; in async mode that would make versions wait for
stragglers as rounds do. Here each device asks for work whenever its own
time comes (its heavy-tailed speed: ``--speed-spread``), the server hands
out leases up to its concurrency and makes a version every K updates, and
the run ends once ``rounds`` versions were made (or after ``rounds`` x
``deadline_s`` seconds, whichever comes first). Each version is scored on
the global test split when it appears, with its staleness from the server.
"""

from __future__ import annotations

from dataclasses import replace

from fedge.client_sim.fleet.config import FleetConfig
from fedge.client_sim.fleet.free_run import FreeRunReport, run_free
from fedge.client_sim.fleet.model_source import Say
from fedge.client_sim.fleet.preparation import prepare_model
from fedge.client_sim.fleet.threads import ThreadBackend
from fedge.errors import ConfigError


def free_run_applies(config: FleetConfig) -> bool:
    """Async mode on the embedded server, with the devices in this process."""
    return config.asynchronous and config.server_url is None and config.backend == "thread"


def run_async_fleet(config: FleetConfig, say: Say = lambda _: None) -> FreeRunReport:
    if not free_run_applies(config):
        raise ConfigError("the free run is async mode's, on the embedded server, thread backend")
    if config.release_every is not None:
        raise ConfigError(
            "--release-every with --aggregation async on the embedded server: its devices run "
            "on the wall clock and do not follow releases; run fedge serve --aggregation async "
            "with release_every_rounds = N (it counts versions) and give --server"
        )
    with prepare_model(config, say) as (model, data):
        config = replace(config, per_round=model.per_round)
        backend = ThreadBackend.start(config, model, data)
        try:
            say(f"free run: {len(backend.devices)} devices until {config.rounds} versions")
            return run_free(
                backend.devices,
                model,
                model.trainer(),
                data.test,
                budget_s=config.rounds * config.deadline_s,
                workers=config.workers,
                models=config.rounds,
            )
        finally:
            backend.close()
