"""The coordinator's parts wired together on a temporary data directory,
without Flask and without the background driver: a test moves time by
passing ``now`` and reaches every part directly."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedge.server.config import ServerConfig
from fedge.server.metrics import Metrics, server_metrics
from fedge.server.round_config import RoundConfig
from fedge.server.rounds.closer import RoundCloser
from fedge.server.rounds.ingest import UpdateIngest
from fedge.server.rounds.lifecycle import RoundLifecycle
from fedge.server.rounds.norm_bound import bound_for_new_round
from fedge.server.rounds.recovery import recover
from fedge.server.rounds.running_sum import RoundSum
from fedge.server.rounds.selection import Selector
from fedge.server.rounds.strategy import RoundStrategy
from fedge.server.storage import rounds as rs
from fedge.server.storage.devices import Conditions, Device
from fedge.server.storage.sqlite.database import Database
from fedge.server.storage.sqlite.store import SQLiteStore
from tests.server.helpers import SPECS, tiny_model


@dataclass
class Parts:
    config: ServerConfig
    store: SQLiteStore
    dirs: rs.Directories
    metrics: Metrics
    round_sum: RoundSum
    lifecycle: RoundLifecycle
    selector: Selector
    ingest: UpdateIngest
    wakes: list[int] = field(default_factory=list)

    @property
    def db(self) -> Database:
        """The SQLite file under the store, for a test's own SQL."""
        return self.store.db

    def device(self, participations: int = 0, enrolled_at: float = 0.0) -> Device:
        """A device with a history, without playing it: enrolled long ago
        (settled, for the fair sampler) unless ``enrolled_at`` says when."""
        with self.store.transaction() as tx:
            enrolment = tx.devices.enrol("test", None, time.time())
            tx.connection.execute(
                "UPDATE devices SET participations = ?, created_at = ? WHERE id = ?",
                (participations, enrolled_at, enrolment.device_id),
            )
        return Device(enrolment.device_id, "test", False, False, False, participations)

    def round(self, round_id: int) -> rs.RoundRecord:
        with self.store.reading() as tx:
            record = tx.rounds.get(round_id)
        assert record is not None, f"no round {round_id}"
        return record

    def task(self, device: Device) -> dict[str, Any]:
        decision = self.selector.request_task(device, Conditions())
        assert decision.task is not None, decision
        return decision.task


def build_parts(data_dir: Path, **settings: Any) -> Parts:
    """Parts on ``data_dir`` (a second call on it is a restart); round 1 is open."""
    rounds: dict[str, Any] = {
        "target_participants": 2,
        "min_participants": 1,
        "over_selection": 1.0,
    }
    rounds.update(settings.pop("rounds", {}))
    config = ServerConfig(data_dir=data_dir, rounds=RoundConfig(**rounds), **settings)
    config.validate()
    store = SQLiteStore.in_data_dir(config.data_dir)
    dirs = rs.Directories.under(data_dir)
    metrics = server_metrics()
    strategy = RoundStrategy(config)
    round_sum = RoundSum()
    model = recover(store, dirs, SPECS, tiny_model().weights, strategy, round_sum, metrics)
    closer = RoundCloser(dirs, strategy, config.update_retention_rounds)
    lifecycle = RoundLifecycle(
        store,
        config.rounds,
        round_sum,
        model,
        closer,
        metrics,
        norm_bound=lambda tx: bound_for_new_round(tx, config, SPECS),
    )
    wakes: list[int] = []
    ingest = UpdateIngest(
        config,
        store,
        dirs.updates,
        SPECS,
        strategy,
        round_sum,
        metrics,
        lambda: wakes.append(round_sum.count),
    )
    selector = Selector(store, config.rounds, "tiny", [s.name for s in SPECS])
    lifecycle.drive()
    return Parts(config, store, dirs, metrics, round_sum, lifecycle, selector, ingest, wakes)
