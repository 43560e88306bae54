"""The round lifecycle: when a round ends, how, and the next one opening.

::

    open --target reached, or deadline with quorum--> closing --aggregate--> closed
      |                                                  |  (a full disk: retried
      |                                                  |   with backoff, visibly)
      |                                                  +--not finite--> failed
      +--deadline without quorum--> abandoned

Every change of state is a compare-and-set (``WHERE state = 'open'``). A
round ends and the next one opens in the same transaction, so while the
server is healthy some round is always in progress; what lives in memory
(the running sum, the global model) changes only once that transaction has
committed. :meth:`RoundLifecycle.drive` takes one step; the background
:class:`~fedge.server.rounds.driver.RoundDriver` calls it every tick.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any

from fedge.server.aggregation.errors import AggregationError
from fedge.server.errors import Conflict, NotFound
from fedge.server.metrics import Metrics
from fedge.server.round_config import RoundConfig
from fedge.server.rounds.closer import RoundCloser
from fedge.server.rounds.driver import CloseFailure, backoff_s
from fedge.server.rounds.global_model import GlobalModel
from fedge.server.rounds.norm_bound import CONFIG_KEY
from fedge.server.rounds.running_sum import RoundSum
from fedge.server.storage import rounds as rs
from fedge.server.storage.store import Store, Tx

if TYPE_CHECKING:
    from fedge.server.rounds.secure import SecureRounds

log = logging.getLogger("fedge.server")


def due_transition(
    rounds: RoundConfig, updates: int, now: float, deadline_at: float, buffered: bool = False
) -> str | None:
    """Where an open round with ``updates`` goes now: ``closing`` (target
    reached, or deadline passed with quorum), ``abandoned`` (deadline passed
    without quorum) or nowhere (``None``). A ``buffered`` round (a version
    of the async mode) closes at its target only and is never abandoned:
    its buffer holds acknowledged updates of earlier versions' devices."""
    if buffered:
        return "closing" if updates >= rounds.target_participants else None
    if updates >= rounds.target_participants or (
        now >= deadline_at and updates >= rounds.min_participants
    ):
        return "closing"
    if now >= deadline_at:
        return "abandoned"
    return None


class RoundLifecycle:
    def __init__(
        self,
        store: Store,
        rounds: RoundConfig,
        round_sum: RoundSum,
        model: GlobalModel,
        closer: RoundCloser,
        metrics: Metrics,
        norm_bound: Callable[[Tx], float | None] = lambda tx: None,
        secure: SecureRounds | None = None,
        buffered: bool = False,
        catch_up: Callable[[Tx, rs.RoundRecord], object] | None = None,
    ) -> None:
        """``norm_bound``: the bound on update norms for a round about to
        open, read in its opening transaction and stored in its config
        (:mod:`fedge.server.rounds.norm_bound`). ``catch_up``: with several
        workers, folds the open round's updates other processes committed,
        in the transaction that may end it (:mod:`fedge.server.rounds.workers`).
        ``buffered``: asynchronous
        aggregation, each round a version (see ``due_transition``); each
        close also publishes a ``version`` event."""
        self._buffered = buffered
        self._catch_up = catch_up
        self._norm_bound = norm_bound
        # Secure rounds end when unmasked, not on a count of updates.
        self._secure = secure
        self._store = store
        self._rounds = rounds
        self._sum = round_sum
        self._closer = closer
        self._metrics = metrics
        self.model = model
        self.close_failure: CloseFailure | None = None
        self._end_requested = 0  # the round an admin asked to end now

    def drive(self, now: float | None = None) -> None:
        """One step: start closing a round that is due, close a closing
        one, open a round when none is in progress.

        A step that fails (a full disk, say) leaves every state as it was,
        is recorded in :attr:`close_failure` (shown by the round, ``/healthz``
        and the metrics) and is not tried again before its backoff expires.
        """
        now = time.time() if now is None else now
        with self._sum.lock:
            failure = self.close_failure
            if failure is not None and time.time() < failure.retry_at:
                return
            try:
                self._step(now)
            except Exception as exc:
                self._record_failure(exc)
                raise
            if self.close_failure is not None:
                log.info("round %d: closing works again", self.close_failure.round_id)
                self.close_failure = None
                self._metrics.set("fedge_round_close_failing", 0)

    def stand_down(self) -> None:
        """This process no longer runs the rounds (another worker took the
        lease): a close it failed is not its to retry or report any more,
        so ``/healthz`` does not call a healthy worker failing."""
        with self._sum.lock:
            if self.close_failure is not None:
                log.info("round %d: closing is another worker's now", self.close_failure.round_id)
                self.close_failure = None
                self._metrics.set("fedge_round_close_failing", 0)

    def end_round_now(self) -> rs.RoundRecord:
        """Admin: end the open round as if its deadline had passed."""
        with self._sum.lock:
            with self._store.reading() as tx:
                record = tx.rounds.open()
            if record is None:
                raise Conflict("no round is open", code="no_open_round")
            if self.close_failure is not None:  # an admin asking is a reason to try now
                self.close_failure = replace(self.close_failure, retry_at=0.0)
            # Remembered, so that the driver's retries still end it after a failure
            # (in this process: after a restart, the admin asks again).
            self._end_requested = record.id
            self.drive()
            with self._store.reading() as tx:
                ended = tx.rounds.get(record.id)
        if ended is None:
            raise NotFound(f"no round {record.id}", code="unknown_round")
        return ended

    def _step(self, now: float) -> None:
        ended: rs.RoundRecord | None = None
        opened: rs.RoundRecord | None = None
        with self._store.transaction() as tx:
            record = tx.rounds.active()
            if record is None:
                opened = self._open(tx, self.model.checkpoint_id)
            elif record.state == "open":
                if self._catch_up is not None:
                    self._catch_up(tx, record)
                if record.id == self._end_requested:  # as at its deadline
                    now = max(now, record.deadline_at)
                record, ended, opened = self._end_if_due(tx, record, now)
        self._after(ended, opened)
        if record is not None and record.state == "closing":
            self._close(record)

    def _end_if_due(
        self, tx: Tx, record: rs.RoundRecord, now: float
    ) -> tuple[rs.RoundRecord, rs.RoundRecord | None, rs.RoundRecord | None]:
        """(round, ended, opened): the round moved to closing, or abandoned
        and the next one opened, or left open."""
        count = self._sum.count
        if self._secure is not None:  # never buffered (the configuration refuses both)
            outcome = self._secure.due(record, now)
            count = self._sum.count  # the survivors, once unmasked
        else:
            outcome = due_transition(self._rounds, count, now, record.deadline_at, self._buffered)
        if self._buffered and record.id == self._end_requested and count > 0:
            outcome = "closing"  # an admin's step with a partial buffer
        if outcome == "closing":
            tx.rounds.transition(record.id, "open", "closing")
            tx.events.add("round_closing", {"round_id": record.id, "updates": count})
            return replace(record, state="closing"), None, None
        if outcome == "abandoned":
            ended = self._end_without_checkpoint(tx, record, "abandoned", "no quorum")
            return ended, ended, self._open(tx, self.model.checkpoint_id)
        return record, None, None

    def _close(self, record: rs.RoundRecord) -> None:
        try:
            secure = None if self._secure is None else self._secure.closing(record.id)
            with self._store.reading() as tx:
                aggregate = self._closer.compute_aggregate(
                    tx,
                    record,
                    self.model,
                    self._sum.mean,
                    dict(self._sum.factors) if self._buffered else None,
                )
            if secure is not None:
                metrics, survivors = secure
                aggregate = replace(
                    aggregate,
                    metrics={**aggregate.metrics, **metrics, "updates": len(survivors)},
                    device_ids=survivors,
                )
        except AggregationError as exc:  # not finite, or cannot be combined
            with self._store.transaction() as tx:
                ended = self._end_without_checkpoint(tx, record, "failed", str(exc))
                opened = self._open(tx, self.model.checkpoint_id)
            self._after(ended, opened)
            return
        with self._store.transaction() as tx:
            new_id = self._closer.commit(tx, aggregate)
            opened = self._open(tx, new_id)
            if self._buffered:
                tx.events.add(
                    "version",
                    {
                        "version": opened.id,
                        "checkpoint": new_id,
                        "made_by": record.id,
                        "updates": len(aggregate.device_ids),
                        "mean_staleness": aggregate.metrics.get("mean_staleness", 0.0),
                    },
                )
        result = aggregate.result
        self.model = GlobalModel(new_id, result.weights, result.state)
        self._count_end(record, "closed")
        if self._buffered:
            self._metrics.inc("fedge_versions_total")
        self._metrics.observe("fedge_aggregation_seconds", aggregate.seconds)
        log.info(
            "closed round %d: %d updates -> checkpoint %s (%.3f s)",
            record.id,
            len(aggregate.device_ids),
            new_id[:12],
            aggregate.seconds,
        )
        self._after(None, opened)
        self._closer.apply_retention(self._store, record.id)

    def _open(self, tx: Tx, base_checkpoint: str) -> rs.RoundRecord:
        rounds = self._rounds
        config = {**asdict(rounds), CONFIG_KEY: self._norm_bound(tx)}
        record = tx.rounds.insert(base_checkpoint, config, time.time(), rounds.deadline_s)
        tx.events.add(
            "round_opened", {"round_id": record.id, "base_checkpoint": record.base_checkpoint}
        )
        return record

    def _end_without_checkpoint(
        self, tx: Tx, record: rs.RoundRecord, outcome: str, reason: str
    ) -> rs.RoundRecord:
        """End a round with no new model (``abandoned`` from open, ``failed``
        from closing): the current checkpoint stays, the next round trains
        from it."""
        metrics: dict[str, Any] = {"updates": self._sum.count, "reason": reason}
        if self._secure is not None:
            metrics = {**self._secure.metrics(record.id), **metrics}
        tx.rounds.transition(
            record.id,
            "open" if outcome == "abandoned" else "closing",
            outcome,
            closed_at=time.time(),
            metrics=rs.json_text(metrics),
        )
        tx.events.add(f"round_{outcome}", {"round_id": record.id, **metrics})
        return replace(record, state=outcome, metrics=metrics)

    def _after(self, ended: rs.RoundRecord | None, opened: rs.RoundRecord | None) -> None:
        """What changes in memory once a round's end (with no checkpoint)
        and the next one's opening have committed."""
        if ended is not None:
            self._count_end(ended, ended.state)
            log.warning(
                "round %d %s (%d updates): %s; checkpoint %s stays",
                ended.id,
                ended.state,
                ended.metrics["updates"],
                ended.metrics["reason"],
                self.model.checkpoint_id[:12],
            )
        if opened is not None:
            self._sum.restart()
            self._metrics.set("fedge_current_round", opened.id)
            self._metrics.set("fedge_round_updates", 0)
            log.info("opened round %d on checkpoint %s", opened.id, opened.base_checkpoint[:12])

    def _count_end(self, record: rs.RoundRecord, outcome: str) -> None:
        self._metrics.inc("fedge_rounds_total", outcome=outcome)
        self._metrics.observe(
            "fedge_round_duration_seconds",
            max(0.0, time.time() - record.opened_at),
            outcome=outcome,
        )

    def _record_failure(self, exc: Exception) -> None:
        with self._store.reading() as tx:
            active = tx.rounds.active()
        round_id = 0 if active is None else active.id
        previous = self.close_failure
        attempts = 1 if previous is None or previous.round_id != round_id else previous.attempts + 1
        self.close_failure = CloseFailure(
            round_id,
            attempts,
            f"{type(exc).__name__}: {exc}",
            time.time() + backoff_s(attempts),
        )
        self._metrics.inc("fedge_round_close_failures_total")
        self._metrics.set("fedge_round_close_failing", 1)
        log.error("round %d: step failed (attempt %d); will retry: %s", round_id, attempts, exc)
