"""The aggregator folds in the updates other workers committed.

Called in the transaction that may move the open round to closing, which
holds the database's write lock: no worker can commit an update between
this read and that change of state (a worker's commit re-checks that the
round is open under the same lock), so the sum holds every update of the
round when it closes. Between closes the driver calls it at every step,
woken by the updates' notifications (LISTEN/NOTIFY) or its tick.
"""

from __future__ import annotations

import logging

from fedge.server.metrics import Metrics
from fedge.server.rounds.buffered.staleness import StalenessPolicy
from fedge.server.rounds.recovery import fold_stored
from fedge.server.rounds.running_sum import RoundSum
from fedge.server.rounds.strategy import RoundStrategy
from fedge.server.storage import rounds as rs
from fedge.server.storage.blobs import BlobStores
from fedge.server.storage.store import Tx

log = logging.getLogger("fedge.server")


def catch_up(
    tx: Tx,
    record: rs.RoundRecord,
    blobs: BlobStores,
    strategy: RoundStrategy,
    round_sum: RoundSum,
    metrics: Metrics,
    staleness: StalenessPolicy | None = None,
) -> int:
    """Fold the round's committed updates that are not in the sum yet, in
    arrival order; returns how many."""
    with round_sum.lock:
        if tx.updates.count(record.id) == round_sum.count:
            return 0  # nothing new: one indexed count, not every row
        rows = tx.updates.of_round(record.id, by_arrival=True)
        added = fold_stored(rows, blobs.updates, strategy, round_sum, staleness)
        if added:
            metrics.set("fedge_round_updates", round_sum.count)
            log.debug("folded %d updates committed by other workers", added)
    return added
