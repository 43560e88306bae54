"""Rebuilding the coordinator's memory at start from what is on disk.

Nothing the server acknowledged is lost, even after kill -9: an update is
acknowledged only once its file is fsynced and its row committed. At start:

1. temp files left by a write that was cut short are removed, and so are
   segments no stored update points into (a batch a crash cut off before
   its commit; a torn tail after a segment's last committed record is
   never read: rows point only at complete records);
2. a new data directory gets checkpoint 0, the initial weights;
3. the current checkpoint and the server optimizer's state are read back;
4. every stored update of the round in progress (open, or closing when the
   server stopped) is added to the running sum again, in arrival order, with
   the weight the strategy gave it when it was accepted (in async mode,
   times its staleness factor: the round it was trained on is in its file).

With several worker processes (PostgreSQL) this runs whenever a process
becomes the aggregator (:mod:`fedge.server.rounds.workers`), with the
other processes still writing: only temp files older than ``temp_age_s``
are left-overs then (a live worker's upload takes seconds, not an hour).
:func:`fold_stored` is also how the aggregator folds in the updates other
workers commit while it runs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from fedge.server.errors import ConfigurationError
from fedge.server.metrics import Metrics
from fedge.server.rounds.buffered.staleness import StalenessPolicy
from fedge.server.rounds.global_model import CURRENT_CHECKPOINT, GlobalModel, load_global_model
from fedge.server.rounds.running_sum import RoundSum
from fedge.server.rounds.strategy import RoundStrategy
from fedge.server.storage import rounds as rs
from fedge.server.storage.blobs import BlobStore, BlobStores
from fedge.server.storage.segments import remove_unreferenced, stored_bytes
from fedge.server.storage.store import Store
from fedge.wire.update_codec import Checkpoint, Weights, decode_update
from fedge.wire.weight_spec import ModelSpec

log = logging.getLogger("fedge.server")


def recover(
    store: Store,
    blobs: BlobStores,
    specs: ModelSpec,
    initial_weights: Weights | None,
    strategy: RoundStrategy,
    round_sum: RoundSum,
    metrics: Metrics,
    staleness: StalenessPolicy | None = None,
    temp_age_s: float = 0.0,
    fold: bool = True,
) -> GlobalModel:
    """The global model; ``round_sum`` holds the round in progress again
    (``fold=False``: left empty, for a process that does not aggregate)."""
    for kind in blobs.all():
        removed = kind.remove_unfinished(temp_age_s)
        if removed:
            log.warning("removed %d unfinished writes in %s", removed, kind.local_path(""))
    with store.transaction() as tx:
        current = tx.state.get(CURRENT_CHECKPOINT)
        if current is None:
            if initial_weights is None:
                # Only a first start that was cut short leaves a database so.
                raise ConfigurationError(
                    f"{store.location} holds no checkpoint and no initial weights were given; "
                    "remove the data directory or use another --data-dir"
                )
            checkpoint = Checkpoint(round_id=0, weights=initial_weights)
            current = rs.store_checkpoint(tx.checkpoints, blobs.checkpoints, checkpoint)
            tx.state.set(CURRENT_CHECKPOINT, current)
        active = tx.rounds.active()
        rows = [] if active is None or not fold else tx.updates.of_round(active.id, True)
        live = tx.updates.live_segments()
    # Other workers may be writing the open round's segments right now.
    spared = active.id if active is not None and temp_age_s > 0 else None
    orphans = remove_unreferenced(blobs.updates.local_path(""), live, spare_round=spared)
    if orphans:
        log.warning("removed %d segments no stored update points into: %s", len(orphans), orphans)
    with store.reading() as tx:
        model = load_global_model(tx, current, blobs, specs)
    round_sum.restart()
    fold_stored(rows, blobs.updates, strategy, round_sum, staleness)
    if active is not None and fold:
        log.info("resumed round %d (%s) with %d updates", active.id, active.state, len(rows))
        metrics.set("fedge_current_round", active.id)
        metrics.set("fedge_round_updates", len(rows))
    return model


# Stored updates are folded in batches, as a group commit's are: the float64
# sum crosses memory once per batch (fedge.server.aggregation.blocked), not
# once per update. A batch holds at most this many updates and decoded
# bytes: recovery reads a whole round, which may be thousands of updates.
FOLD_BATCH_UPDATES = 64
FOLD_BATCH_BYTES = 256 << 20


@dataclass
class _Batch:
    """Decoded updates waiting to be added to the sum together."""

    devices: list[str] = field(default_factory=list)
    deltas: list[Weights] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    factors: list[tuple[int, float] | None] = field(default_factory=list)
    nbytes: int = 0

    def full(self) -> bool:
        return len(self.deltas) >= FOLD_BATCH_UPDATES or self.nbytes >= FOLD_BATCH_BYTES

    def add_to(self, round_sum: RoundSum) -> int:
        """Add the batch to ``round_sum`` (all or nothing); how many updates."""
        if self.deltas:
            round_sum.add_many(self.deltas, self.weights)
        for device, factor in zip(self.devices, self.factors, strict=True):
            if factor is not None:
                round_sum.factors[device] = factor
            round_sum.devices.add(device)
        return len(self.deltas)


def fold_stored(
    rows: Sequence[rs.UpdateRecord],
    blobs: BlobStore,
    strategy: RoundStrategy,
    round_sum: RoundSum,
    staleness: StalenessPolicy | None,
) -> int:
    """Add the stored updates of ``rows`` not yet in ``round_sum`` (by
    device), in the order given, a batch at a time; returns how many were
    added."""
    added = 0
    with round_sum.lock:
        batch = _Batch()
        for row in rows:
            if row.device_id in round_sum.devices or row.device_id in batch.devices:
                continue
            update = decode_update(stored_bytes(blobs, row))
            deltas = update.deltas
            weight = strategy.weight(deltas, row.num_examples)
            factor = None
            if staleness is not None:
                # Not re-checked against the bound: it was within it when acknowledged.
                lag = row.round_id - update.meta.round_id
                factor = (lag, staleness.factor(lag))
                weight *= factor[1]
            averaged = strategy.averaged(deltas)
            batch.devices.append(row.device_id)
            batch.deltas.append(averaged)
            batch.weights.append(weight)
            batch.factors.append(factor)
            batch.nbytes += sum(value.nbytes for value in averaged.values())
            if batch.full():
                added += batch.add_to(round_sum)
                batch = _Batch()
        added += batch.add_to(round_sum)
    return added
