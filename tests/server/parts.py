"""The coordinator's parts wired together on a temporary data directory,
without Flask and without the background driver: a test moves time by
passing ``now`` and reaches every part directly."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
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
from fedge.server.storage.blobs import BlobStores
from fedge.server.storage.devices import Conditions, Device
from fedge.server.storage.store import Store
from tests.helpers.stores import Stores
from tests.server.helpers import SPECS, tiny_model


@dataclass
class Parts:
    config: ServerConfig
    store: Store
    blobs: BlobStores
    metrics: Metrics
    round_sum: RoundSum
    lifecycle: RoundLifecycle
    selector: Selector
    ingest: UpdateIngest
    wakes: list[int] = field(default_factory=list)

    @property
    def updates_dir(self) -> Path:
        """The updates blob store's directory (the segments are files in it)."""
        return self.blobs.updates.local_path("")

    def sql(self, statement: str, params: Sequence[Any] = ()) -> list[Any]:
        """A test's own query (``?`` parameters, either store): its rows."""
        with self.store.reading() as tx:
            return list(tx.connection.execute(statement, params).fetchall())  # type: ignore[attr-defined]

    def write(self, statement: str, params: Sequence[Any] = ()) -> None:
        """A test's own change, in a transaction of its own."""
        with self.store.transaction() as tx:
            tx.connection.execute(statement, params)  # type: ignore[attr-defined]

    def device(self, participations: int = 0, enrolled_at: float = 0.0) -> Device:
        """A device with a history, without playing it: enrolled long ago
        (settled, for the fair sampler) unless ``enrolled_at`` says when."""
        with self.store.transaction() as tx:
            enrolment = tx.devices.enrol("test", None, time.time())
            tx.connection.execute(  # type: ignore[attr-defined]
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


def build_parts(data_dir: Path, stores: Stores | None = None, **settings: Any) -> Parts:
    """Parts on ``data_dir`` (a second call on it is a restart) and its store
    (SQLite unless ``stores`` says otherwise); round 1 is open."""
    rounds: dict[str, Any] = {
        "target_participants": 2,
        "min_participants": 1,
        "over_selection": 1.0,
    }
    rounds.update(settings.pop("rounds", {}))
    config = ServerConfig(data_dir=data_dir, rounds=RoundConfig(**rounds), **settings)
    config.validate()
    store = (stores or Stores("sqlite")).open(config.data_dir)
    blobs = BlobStores.under(data_dir)
    metrics = server_metrics()
    strategy = RoundStrategy(config)
    round_sum = RoundSum()
    model = recover(store, blobs, SPECS, tiny_model().weights, strategy, round_sum, metrics)
    closer = RoundCloser(blobs, strategy, config.update_retention_rounds)
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
        blobs.updates,
        SPECS,
        strategy,
        round_sum,
        metrics,
        lambda: wakes.append(round_sum.count),
    )
    selector = Selector(store, config.rounds, "tiny", [s.name for s in SPECS])
    lifecycle.drive()
    return Parts(config, store, blobs, metrics, round_sum, lifecycle, selector, ingest, wakes)


PartsOn = Callable[..., Parts]  # build_parts with the store kind chosen (the parts_on fixture)
