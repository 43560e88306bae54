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
"""

from __future__ import annotations

import logging

from fedge.server.errors import ConfigurationError
from fedge.server.metrics import Metrics
from fedge.server.rounds.buffered.staleness import StalenessPolicy
from fedge.server.rounds.global_model import CURRENT_CHECKPOINT, GlobalModel, load_global_model
from fedge.server.rounds.running_sum import RoundSum
from fedge.server.rounds.strategy import RoundStrategy
from fedge.server.storage import rounds as rs
from fedge.server.storage.durable import remove_temp_files
from fedge.server.storage.segments import remove_unreferenced, stored_bytes
from fedge.server.storage.store import Store
from fedge.wire.update_codec import Checkpoint, Weights, decode_update
from fedge.wire.weight_spec import ModelSpec

log = logging.getLogger("fedge.server")


def recover(
    store: Store,
    dirs: rs.Directories,
    specs: ModelSpec,
    initial_weights: Weights | None,
    strategy: RoundStrategy,
    round_sum: RoundSum,
    metrics: Metrics,
    staleness: StalenessPolicy | None = None,
) -> GlobalModel:
    """The global model; ``round_sum`` holds the round in progress again."""
    for directory in dirs.all():
        removed = remove_temp_files(directory)
        if removed:
            log.warning("removed %d leftover temp files in %s", removed, directory)
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
            current = rs.store_checkpoint(tx.checkpoints, dirs.checkpoints, checkpoint)
            tx.state.set(CURRENT_CHECKPOINT, current)
        active = tx.rounds.active()
        rows = [] if active is None else tx.updates.of_round(active.id, by_arrival=True)
        live = tx.updates.live_segments()
    orphans = remove_unreferenced(dirs.updates, live)
    if orphans:
        log.warning("removed %d segments no stored update points into: %s", len(orphans), orphans)
    with store.reading() as tx:
        model = load_global_model(tx, current, dirs, specs)
    round_sum.restart()
    for row in rows:
        update = decode_update(stored_bytes(dirs.updates, row))
        deltas = update.deltas
        weight = strategy.weight(deltas, row.num_examples)
        if staleness is not None:
            # Not re-checked against the bound: it was within it when acknowledged.
            lag = row.round_id - update.meta.round_id
            factor = staleness.factor(lag)
            round_sum.factors[row.device_id] = (lag, factor)
            weight *= factor
        round_sum.add(strategy.averaged(deltas), weight)
    if active is not None:
        log.info("resumed round %d (%s) with %d updates", active.id, active.state, len(rows))
        metrics.set("fedge_current_round", active.id)
        metrics.set("fedge_round_updates", len(rows))
    return model
