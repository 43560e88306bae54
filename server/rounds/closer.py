"""Closing a round: its updates become the next checkpoint.

Two halves, so that the slow one can later move to a background closer
without changing what is stored:

* :meth:`RoundCloser.compute_aggregate` runs the strategy over the running
  sum (or, for robust strategies, the stored update files) and refuses a
  result that is not finite. It writes nothing.
* :meth:`RoundCloser.commit` stores the checkpoint and the server
  optimizer's state, marks the round ``closed``, counts the devices'
  participations and makes the checkpoint current, in the caller's
  transaction (the same one opens the next round).

Then :meth:`RoundCloser.apply_retention` deletes the update files of rounds
that ended long enough ago.
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedge.server.aggregation.errors import AggregationError
from fedge.server.aggregation.kernels import StreamingMean
from fedge.server.devices.metrics import weighted_device_metrics
from fedge.server.rounds.global_model import CURRENT_CHECKPOINT, GlobalModel
from fedge.server.rounds.strategy import RoundResult, RoundStrategy, save_strategy_state
from fedge.server.storage import rounds as rs
from fedge.server.storage.blobs import BlobStores
from fedge.server.storage.segments import stored_span
from fedge.server.storage.store import Store, Tx
from fedge.wire.update_codec import Checkpoint

log = logging.getLogger("fedge.server")


class NonFiniteAggregate(AggregationError):
    """The aggregate holds inf or NaN: storing it would poison every later round."""


@dataclass(frozen=True)
class Aggregate:
    """A round's result, not yet stored."""

    round_id: int
    result: RoundResult
    device_ids: list[str]
    metrics: dict[str, Any]  # as stored with the round and sent in its event
    seconds: float


class RoundCloser:
    def __init__(
        self, blobs: BlobStores, strategy: RoundStrategy, retention_rounds: int | None
    ) -> None:
        self._blobs = blobs
        self._strategy = strategy
        self._retention_rounds = retention_rounds

    def compute_aggregate(
        self,
        tx: Tx,
        record: rs.RoundRecord,
        model: GlobalModel,
        mean: StreamingMean,
        factors: dict[str, tuple[int, float]] | None = None,
    ) -> Aggregate:
        """Raises :class:`AggregationError` when the updates cannot make a
        checkpoint (the round then fails); anything else (a full disk, say)
        may pass and is retried."""
        started = time.perf_counter()
        rows = tx.updates.of_round(record.id)
        examples = [r.num_examples for r in rows]
        # Async mode: each update's staleness factor, as it was summed.
        lags = None if factors is None else [factors.get(r.device_id, (0, 1.0)) for r in rows]
        weighed = None if lags is None else [factor for _, factor in lags]
        with np.errstate(over="ignore", invalid="ignore"):
            result = self._strategy.round_result(
                model.weights,
                model.state,
                mean,
                [stored_span(self._blobs.updates, r) for r in rows],
                tx.rounds.count_closed(),
                num_examples=examples,
                factors=weighed,
                lags=None if lags is None else [lag for lag, _ in lags],
            )
        require_finite(result)
        seconds = time.perf_counter() - started
        weights = self._strategy.round_weights(examples, weighed)
        total = sum(weights)
        metrics = {
            "updates": len(rows),
            "examples": int(sum(r.num_examples for r in rows)),
            "mean_update_norm": float(sum(r.norm for r in rows) / max(len(rows), 1)),
            # What the next rounds' adaptive norm bound reads (rounds.norm_bound).
            "median_update_norm": float(statistics.median(r.norm for r in rows)) if rows else 0.0,
            "max_device_share": max(weights) / total if total > 0 else 0.0,
            "aggregation_seconds": seconds,
            "strategy": self._strategy.name,
            **({} if lags is None else staleness_metrics(lags)),
            **result.metrics,
            # The devices' own metrics (loss, accuracy), weighed as in the aggregate.
            **weighted_device_metrics(zip(weights, (r.metrics for r in rows), strict=True)),
        }
        device_ids = [r.device_id for r in rows]
        return Aggregate(record.id, result, device_ids, metrics, seconds)

    def commit(self, tx: Tx, aggregate: Aggregate) -> str:
        """Store the aggregate as the current checkpoint; returns its id."""
        checkpoint = Checkpoint(round_id=aggregate.round_id, weights=aggregate.result.weights)
        new_id = rs.store_checkpoint(tx.checkpoints, self._blobs.checkpoints, checkpoint)
        save_strategy_state(self._blobs.strategy, new_id, aggregate.result.state)
        tx.rounds.transition(
            aggregate.round_id,
            "closing",
            "closed",
            closed_at=time.time(),
            result_checkpoint=new_id,
            metrics=rs.json_text(aggregate.metrics),
        )
        tx.devices.count_participations(aggregate.device_ids)
        tx.state.set(CURRENT_CHECKPOINT, new_id)
        tx.events.add(
            "round_closed",
            {"round_id": aggregate.round_id, "checkpoint": new_id, "metrics": aggregate.metrics},
        )
        return new_id

    def apply_retention(self, store: Store, closed_round: int) -> None:
        """Delete the update files of rounds that ended more than
        ``update_retention_rounds`` rounds ago: once a round has ended, no
        strategy and no recovery reads its updates (the receipts stay)."""
        keep = self._retention_rounds
        if keep is None:
            return
        with store.transaction() as tx:
            paths = tx.updates.forget_files_through(closed_round - keep)
        blobs = self._blobs.updates
        for path in paths:
            blobs.delete(path)


def staleness_metrics(lags: list[tuple[int, float]]) -> dict[str, Any]:
    """What a version's metrics say of its buffer's staleness: the mean, the
    most, a histogram (versions behind -> updates) and the mean factor."""
    histogram: dict[str, int] = {}
    for staleness, _ in lags:
        histogram[str(staleness)] = histogram.get(str(staleness), 0) + 1
    count = max(len(lags), 1)
    return {
        "mean_staleness": sum(s for s, _ in lags) / count,
        "max_staleness": max((s for s, _ in lags), default=0),
        "staleness_histogram": histogram,
        "mean_staleness_factor": sum(f for _, f in lags) / count,
    }


def require_finite(result: RoundResult) -> None:
    for name, value in result.weights.items():
        if not np.isfinite(value).all():
            raise NonFiniteAggregate(f"the aggregate of {name} is not finite")
    for name, value in result.state.to_tensors().items():
        if not np.isfinite(value).all():
            raise NonFiniteAggregate(f"the server optimizer's {name} is not finite")
