"""The round coordinator: selection, acceptance, closing, recovery.

One coordinator per data directory (see :mod:`fedge.server.data_dir`). Its
state lives in SQLite and in files under the data directory; in memory it
keeps only what it can rebuild: the global weights of the current
checkpoint and the running weighted sum of the round in progress
(O(model size), whatever the number of devices).

A round's life::

    open --target reached, or deadline with quorum--> closing --aggregate--> closed
      |                                                  |  (a full disk: retried
      |                                                  |   with backoff, visibly)
      |                                                  +--not finite--> failed
      +--deadline without quorum--> abandoned

Every change of state is a compare-and-set (``WHERE state = 'open'``).
Requests only record: an upload is validated, its file fsynced and its row
committed (then it is acknowledged, and a crash, even kill -9, never loses
it: at start the coordinator re-adds every stored update of the round in
progress). Closing, aggregating and opening the next round happen in
:meth:`Coordinator.drive`, on the one background :class:`RoundDriver`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from fedge.manifest import TensorSpec
from fedge.server import round_store as rs
from fedge.server.aggregation import StreamingMean
from fedge.server.auth import Device
from fedge.server.config import ServerConfig
from fedge.server.db import Database
from fedge.server.durable import remove_temp_files, write_atomically
from fedge.server.errors import Conflict, Forbidden, NotFound
from fedge.server.errors_aggregation import AggregationError
from fedge.server.metrics import Metrics
from fedge.server.round_driver import CloseFailure, RoundDriver, backoff_s
from fedge.server.round_strategy import (
    RoundResult,
    RoundStrategy,
    build_strategy,
    load_strategy_state,
    save_strategy_state,
)
from fedge.server.validation import ValidatedUpdate, validate_update
from fedge.update_codec import Checkpoint, Weights, decode_checkpoint, decode_update

log = logging.getLogger("fedge.server")

CURRENT_CHECKPOINT = "current_checkpoint"
# Uploads of one device to one round are serialised on one of these locks
# (striped, so memory stays bounded); different devices proceed in parallel.
_UPLOAD_LOCK_STRIPES = 64


@dataclass(frozen=True)
class Conditions:
    idle: bool = False
    charging: bool = False
    unmetered: bool = False


@dataclass(frozen=True)
class TaskDecision:
    task: dict[str, Any] | None
    reason: str = ""
    retry_after_s: float = 1.0

    def to_json(self) -> dict[str, Any]:
        if self.task is not None:
            return {"task": self.task}
        return {"task": None, "reason": self.reason, "retry_after_s": self.retry_after_s}


class Coordinator:
    def __init__(
        self,
        config: ServerConfig,
        db: Database,
        specs: list[TensorSpec],
        initial_weights: Weights | None,
        metrics: Metrics,
        model_name: str,
    ) -> None:
        self.config = config
        self.db = db
        self.specs = specs
        self.metrics = metrics
        self.model_name = model_name
        self.checkpoint_dir = config.data_dir / "checkpoints"
        self.update_dir = config.data_dir / "updates"
        self.state_dir = config.data_dir / "strategy"
        self.max_update_norm = effective_max_update_norm(config, specs)
        self._lock = threading.RLock()
        self._upload_locks = [threading.Lock() for _ in range(_UPLOAD_LOCK_STRIPES)]
        self._accumulator = StreamingMean()
        self.close_failure: CloseFailure | None = None
        self._end_requested = 0  # the round an admin asked to end now
        self._recover(initial_weights)
        self._driver = RoundDriver(self.drive, config.tick_s)

    # -- start, recovery, stop -------------------------------------------------

    def start(self) -> None:
        """Bring rounds up to date now, then keep them moving in the background."""
        self.drive()
        self._driver.start()

    def stop(self) -> None:
        self._driver.stop()

    def _recover(self, initial_weights: Weights | None) -> None:
        for directory in (self.checkpoint_dir, self.update_dir, self.state_dir):
            removed = remove_temp_files(directory)
            if removed:
                log.warning("removed %d leftover temp files in %s", removed, directory)
        with self.db.transaction() as conn:
            current = rs.get_state(conn, CURRENT_CHECKPOINT)
            if current is None:
                if initial_weights is None:
                    raise AggregationError("a new data directory needs the initial weights")
                current = rs.store_checkpoint(
                    conn, self.checkpoint_dir, Checkpoint(round_id=0, weights=initial_weights)
                )
                rs.set_state(conn, CURRENT_CHECKPOINT, current)
            active = rs.active_round_record(conn)
            rows = []
            if active is not None:
                rows = conn.execute(
                    "SELECT path, num_examples FROM updates WHERE round_id = ? "
                    "ORDER BY received_at",
                    (active.id,),
                ).fetchall()
        self.current_checkpoint = current
        self.global_weights = self._read_checkpoint(current).weights
        rounds_closed = self._rounds_closed()
        self.strategy: RoundStrategy = build_strategy(self.config)
        self.strategy_state = load_strategy_state(self.state_dir, current, rounds_closed)
        for row in rows:
            deltas = decode_update((self.update_dir / row["path"]).read_bytes()).deltas
            weight = self.strategy.weight(deltas, int(row["num_examples"]))
            self._accumulator.add(deltas, weight, check_finite=False)
        if active is not None:
            log.info("resumed round %d (%s) with %d updates", active.id, active.state, len(rows))
            self.metrics.set("fedge_current_round", active.id)
            self.metrics.set("fedge_round_updates", len(rows))

    def _rounds_closed(self) -> int:
        (count,) = (
            self.db.connection()
            .execute("SELECT COUNT(*) FROM rounds WHERE state = 'closed'")
            .fetchone()
        )
        return int(count)

    def _read_checkpoint(self, checkpoint_id: str) -> Checkpoint:
        return decode_checkpoint(
            (self.checkpoint_dir / f"{checkpoint_id}.safetensors").read_bytes(), self.specs
        )

    # -- devices -------------------------------------------------------------

    def heartbeat(self, device: Device, conditions: Conditions) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE devices SET last_seen = ?, idle = ?, charging = ?, unmetered = ? "
                "WHERE id = ?",
                (
                    time.time(),
                    conditions.idle,
                    conditions.charging,
                    conditions.unmetered,
                    device.id,
                ),
            )

    # -- rounds ----------------------------------------------------------------

    def current_round(self) -> rs.RoundRecord:
        """The round in progress (open or closing); reads only."""
        record = rs.active_round_record(self.db.connection())
        if record is None:
            raise NotFound("no round is in progress", code="no_open_round")
        return record

    def request_task(self, device: Device, conditions: Conditions) -> TaskDecision:
        now = time.time()
        rounds = self.config.rounds
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE devices SET last_seen = ?, last_asked = ?, idle = ?, charging = ?, "
                "unmetered = ? WHERE id = ?",
                (now, now, conditions.idle, conditions.charging, conditions.unmetered, device.id),
            )
            if (
                (rounds.require_idle and not conditions.idle)
                or (rounds.require_charging and not conditions.charging)
                or (rounds.require_unmetered and not conditions.unmetered)
            ):
                return TaskDecision(None, "conditions", retry_after_s=30.0)
            record = rs.open_round_record(conn)
            if record is None:
                return TaskDecision(None, "no_open_round", retry_after_s=1.0)
            selected = conn.execute(
                "SELECT 1 FROM selections WHERE round_id = ? AND device_id = ?",
                (record.id, device.id),
            ).fetchone()
            if selected is None:
                reason = self._admission_refusal(conn, record, device)
                if reason:
                    retry = max(0.5, min(5.0, record.deadline_at - now))
                    return TaskDecision(None, reason, retry_after_s=retry)
                conn.execute(
                    "INSERT INTO selections (round_id, device_id, selected_at) VALUES (?, ?, ?)",
                    (record.id, device.id, now),
                )
            done = conn.execute(
                "SELECT 1 FROM updates WHERE round_id = ? AND device_id = ?",
                (record.id, device.id),
            ).fetchone()
        if done is not None:
            return TaskDecision(None, "already_contributed", retry_after_s=2.0)
        return TaskDecision(self._task(record))

    def _admission_refusal(self, conn: Any, record: rs.RoundRecord, device: Device) -> str:
        """Empty when the device may join; else why not (a fair sampler).

        A device waits while it has taken part in more rounds than the
        least-served recently active device, unless the round has used half
        its time without filling: then anyone may join.
        """
        rounds = self.config.rounds
        (taken,) = conn.execute(
            "SELECT COUNT(*) FROM selections WHERE round_id = ?", (record.id,)
        ).fetchone()
        if taken >= rounds.selection_slots:
            return "round_full"
        (least,) = conn.execute(
            "SELECT COALESCE(MIN(participations), 0) FROM devices WHERE last_asked >= ?",
            (time.time() - 4 * rounds.deadline_s,),
        ).fetchone()
        half_time = record.opened_at + (record.deadline_at - record.opened_at) / 2
        if device.participations > least and time.time() < half_time:
            return "fairness_wait"
        return ""

    def _task(self, record: rs.RoundRecord) -> dict[str, Any]:
        config = record.config
        return {
            "round_id": record.id,
            "base_checkpoint": record.base_checkpoint,
            "checkpoint_url": f"/v1/checkpoints/{record.base_checkpoint}",
            "upload_url": f"/v1/rounds/{record.id}/updates",
            "deadline_at": record.deadline_at,
            "local_epochs": config["local_epochs"],
            "batch_size": config["batch_size"],
            "learning_rate": config["learning_rate"],
            "model": self.model_name,
            "weights": [s.name for s in self.specs],
        }

    def checkpoint_path(self, checkpoint_id: str) -> Path:
        row = (
            self.db.connection()
            .execute("SELECT path FROM checkpoints WHERE id = ?", (checkpoint_id,))
            .fetchone()
        )
        if row is None:
            raise NotFound(f"no checkpoint {checkpoint_id}", code="unknown_checkpoint")
        return self.checkpoint_dir / str(row["path"])

    # -- updates -----------------------------------------------------------------

    def accept_update(
        self, device: Device, round_id: int, raw: bytes
    ) -> tuple[dict[str, Any], bool]:
        """Returns (receipt, created). A retry of the same bytes returns the first
        receipt, whatever state the round is in now; a refusal changes nothing,
        on disk included."""
        digest = _digest(raw)
        receipt = self._known_receipt(round_id, device.id, digest)
        if receipt is not None:
            return receipt, False
        stripe = hash((round_id, device.id)) % _UPLOAD_LOCK_STRIPES
        with self._upload_locks[stripe]:
            # A concurrent retry of the same bytes may have just committed.
            receipt = self._known_receipt(round_id, device.id, digest)
            if receipt is not None:
                return receipt, False
            record = self._round_accepting(device, round_id)
            valid = validate_update(
                raw,
                digest,
                round_id,
                record.base_checkpoint,
                self.specs,
                self.max_update_norm,
                self.config.norm_policy,
            )
            valid = self.strategy.prepare_update(valid)
            relative = f"r{round_id:06d}/{device.id}-{valid.digest[:16]}.safetensors"
            path = self.update_dir / relative
            write_atomically(path, valid.stored_bytes)
            try:
                return self._commit_update(device, record, valid, relative), True
            except BaseException:
                path.unlink(missing_ok=True)
                raise

    def _known_receipt(self, round_id: int, device_id: str, digest: str) -> dict[str, Any] | None:
        row = (
            self.db.connection()
            .execute(
                "SELECT * FROM updates WHERE round_id = ? AND device_id = ?",
                (round_id, device_id),
            )
            .fetchone()
        )
        if row is None:
            return None
        if row["digest"] != digest:
            raise Conflict(
                "this device already sent a different update for this round",
                code="duplicate_update",
            )
        return _receipt(row)

    def _round_accepting(self, device: Device, round_id: int) -> rs.RoundRecord:
        conn = self.db.connection()
        record = rs.round_record(conn, round_id)
        if record is None:
            raise NotFound(f"no round {round_id}", code="unknown_round")
        if record.state != "open":
            raise Conflict(
                f"round {round_id} is {record.state}; fetch a new task", code="round_closed"
            )
        selected = conn.execute(
            "SELECT 1 FROM selections WHERE round_id = ? AND device_id = ?",
            (round_id, device.id),
        ).fetchone()
        if selected is None:
            raise Forbidden(
                f"device {device.id} is not selected for round {round_id}", code="not_selected"
            )
        return record

    def _commit_update(
        self, device: Device, record: rs.RoundRecord, valid: ValidatedUpdate, relative: str
    ) -> dict[str, Any]:
        with self._lock:
            with self.db.transaction() as conn:
                current = rs.round_record(conn, record.id)
                if current is None or current.state != "open":
                    raise Conflict(
                        f"round {record.id} closed while the update was checked",
                        code="round_closed",
                    )
                copy = conn.execute(
                    "SELECT device_id FROM updates WHERE round_id = ? AND digest = ?",
                    (record.id, valid.digest),
                ).fetchone()
                if copy is not None:
                    raise Conflict(
                        "another device already sent these exact bytes in this round",
                        code="duplicate_content",
                    )
                conn.execute(
                    "INSERT INTO updates (round_id, device_id, digest, num_examples, norm, "
                    "clipped, path, bytes, metrics, received_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        record.id,
                        device.id,
                        valid.digest,
                        valid.update.meta.num_examples,
                        valid.norm,
                        valid.clipped,
                        relative,
                        len(valid.stored_bytes),
                        json.dumps(valid.update.meta.metrics),
                        time.time(),
                    ),
                )
                row = conn.execute(
                    "SELECT * FROM updates WHERE round_id = ? AND device_id = ?",
                    (record.id, device.id),
                ).fetchone()
            self._accumulator.add(valid.update.deltas, valid.weight, check_finite=False)
            self.metrics.inc("fedge_updates_accepted_total")
            self.metrics.set("fedge_round_updates", self._accumulator.count)
            if self._accumulator.count >= self.config.rounds.target_participants:
                self._driver.wake()
            return _receipt(row)

    # -- driving rounds ------------------------------------------------------------

    def drive(self, now: float | None = None) -> None:
        """One step of the round life cycle (see the module doc): start closing
        a round that is due, close a closing one, open a new round when none
        is in progress.

        A step that fails (a full disk, say) leaves every state as it was,
        is recorded in :attr:`close_failure` (shown by the round, ``/healthz``
        and the metrics) and is not tried again before its backoff expires.
        """
        now = time.time() if now is None else now
        with self._lock:
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
                self.metrics.set("fedge_round_close_failing", 0)

    def _step(self, now: float) -> None:
        # A round ends and the next one opens in the same transaction: while
        # the server is healthy, some round is always in progress.
        with self.db.transaction() as conn:
            record = rs.active_round_record(conn)
            if record is None:
                self._open_round(conn, self.current_checkpoint)
                return
            if record.state == "open":
                if record.id == self._end_requested:  # as at its deadline
                    now = max(now, record.deadline_at)
                record = self._end_if_due(conn, record, now)
        if record.state == "closing":
            try:
                self._aggregate_and_store(record)
            except AggregationError as exc:  # not finite, or cannot be combined
                with self.db.transaction() as conn:
                    self._end_without_checkpoint(conn, record, "failed", str(exc))
                    self._open_round(conn, self.current_checkpoint)

    def _record_failure(self, exc: Exception) -> None:
        active = rs.active_round_record(self.db.connection())
        round_id = 0 if active is None else active.id
        previous = self.close_failure
        attempts = 1 if previous is None or previous.round_id != round_id else previous.attempts + 1
        self.close_failure = CloseFailure(
            round_id,
            attempts,
            f"{type(exc).__name__}: {exc}",
            time.time() + backoff_s(attempts),
        )
        self.metrics.inc("fedge_round_close_failures_total")
        self.metrics.set("fedge_round_close_failing", 1)
        log.error("round %d: step failed (attempt %d); will retry: %s", round_id, attempts, exc)

    def end_round_now(self) -> rs.RoundRecord:
        """Admin: end the open round as if its deadline had passed."""
        with self._lock:
            record = rs.open_round_record(self.db.connection())
            if record is None:
                raise Conflict("no round is open", code="no_open_round")
            if self.close_failure is not None:  # an admin asking is a reason to try now
                self.close_failure = replace(self.close_failure, retry_at=0.0)
            # Remembered, so that the driver's retries still end it after a failure
            # (in this process: after a restart, the admin asks again).
            self._end_requested = record.id
            self.drive()
            ended = rs.round_record(self.db.connection(), record.id)
        if ended is None:
            raise NotFound(f"no round {record.id}", code="unknown_round")
        return ended

    def _end_if_due(self, conn: Any, record: rs.RoundRecord, now: float) -> rs.RoundRecord:
        """Move an open round on when it is due: to closing, or abandoned
        (and then the next round is opened). Returns the round in progress."""
        count = self._accumulator.count
        rounds = self.config.rounds
        if count >= rounds.target_participants or (
            now >= record.deadline_at and count >= rounds.min_participants
        ):
            rs.transition(conn, record.id, "open", "closing")
            rs.add_event(conn, "round_closing", {"round_id": record.id, "updates": count})
            return replace(record, state="closing")
        if now >= record.deadline_at:
            self._end_without_checkpoint(conn, record, "abandoned", "no quorum")
            return self._open_round(conn, self.current_checkpoint)
        return record

    def _open_round(self, conn: Any, base_checkpoint: str) -> rs.RoundRecord:
        rounds = self.config.rounds
        record = rs.insert_round(
            conn, base_checkpoint, asdict(rounds), time.time(), rounds.deadline_s
        )
        rs.add_event(
            conn, "round_opened", {"round_id": record.id, "base_checkpoint": record.base_checkpoint}
        )
        self._accumulator = StreamingMean()
        self.metrics.set("fedge_current_round", record.id)
        self.metrics.set("fedge_round_updates", 0)
        log.info("opened round %d on checkpoint %s", record.id, record.base_checkpoint[:12])
        return record

    def _end_without_checkpoint(
        self, conn: Any, record: rs.RoundRecord, outcome: str, reason: str
    ) -> None:
        """End a round with no new model (``abandoned`` from open, ``failed``
        from closing): the current checkpoint stays, the next round trains
        from it."""
        count = self._accumulator.count
        rs.transition(
            conn,
            record.id,
            "open" if outcome == "abandoned" else "closing",
            outcome,
            closed_at=time.time(),
            metrics=rs.json_text({"updates": count, "reason": reason}),
        )
        rs.add_event(
            conn, f"round_{outcome}", {"round_id": record.id, "updates": count, "reason": reason}
        )
        self._accumulator = StreamingMean()
        self.metrics.inc("fedge_rounds_total", outcome=outcome)
        self.metrics.set("fedge_current_round", 0)
        log.warning(
            "round %d %s (%d updates): %s; checkpoint %s stays",
            record.id,
            outcome,
            count,
            reason,
            self.current_checkpoint[:12],
        )

    def _aggregate_and_store(self, record: rs.RoundRecord) -> None:
        started = time.perf_counter()
        conn = self.db.connection()
        rows = conn.execute(
            "SELECT device_id, path, num_examples, norm FROM updates WHERE round_id = ?",
            (record.id,),
        ).fetchall()
        rounds_closed = self._rounds_closed()
        with np.errstate(over="ignore", invalid="ignore"):
            result = self.strategy.aggregate(
                self.global_weights,
                self.strategy_state,
                self._accumulator,
                [self.update_dir / r["path"] for r in rows],
                rounds_closed,
            )
        _require_finite(result)
        seconds = time.perf_counter() - started
        metrics = {
            "updates": len(rows),
            "examples": int(sum(r["num_examples"] for r in rows)),
            "mean_update_norm": float(sum(r["norm"] for r in rows) / max(len(rows), 1)),
            "aggregation_seconds": seconds,
            "strategy": self.strategy.name,
            **result.metrics,
        }
        with self.db.transaction() as conn:
            new_id = rs.store_checkpoint(
                conn, self.checkpoint_dir, Checkpoint(round_id=record.id, weights=result.weights)
            )
            save_strategy_state(self.state_dir, new_id, result.state)
            rs.transition(
                conn,
                record.id,
                "closing",
                "closed",
                closed_at=time.time(),
                result_checkpoint=new_id,
                metrics=rs.json_text(metrics),
            )
            conn.executemany(
                "UPDATE devices SET participations = participations + 1 WHERE id = ?",
                [(r["device_id"],) for r in rows],
            )
            rs.set_state(conn, CURRENT_CHECKPOINT, new_id)
            rs.add_event(
                conn,
                "round_closed",
                {"round_id": record.id, "checkpoint": new_id, "metrics": metrics},
            )
            self._open_round(conn, new_id)
        self.current_checkpoint = new_id
        self.global_weights = result.weights
        self.strategy_state = result.state
        self.metrics.inc("fedge_rounds_total", outcome="closed")
        self.metrics.observe("fedge_aggregation_seconds", seconds)
        log.info(
            "closed round %d: %d updates -> checkpoint %s (%.3f s)",
            record.id,
            len(rows),
            new_id[:12],
            seconds,
        )
        self._apply_retention(record.id)

    def _apply_retention(self, closed_round: int) -> None:
        """Delete the update files of rounds that ended more than
        ``update_retention_rounds`` rounds ago: once a round has ended, no
        strategy and no recovery reads its updates (the receipts stay)."""
        keep = self.config.update_retention_rounds
        if keep is None:
            return
        with self.db.transaction() as conn:
            rows = conn.execute(
                "SELECT u.round_id, u.device_id, u.path FROM updates u JOIN rounds r "
                "ON r.id = u.round_id WHERE u.round_id <= ? AND u.path != '' "
                "AND r.state IN ('closed', 'failed', 'abandoned')",
                (closed_round - keep,),
            ).fetchall()
            conn.execute(
                "UPDATE updates SET path = '' WHERE round_id <= ? AND round_id IN "
                "(SELECT id FROM rounds WHERE state IN ('closed', 'failed', 'abandoned'))",
                (closed_round - keep,),
            )
        for row in rows:
            (self.update_dir / row["path"]).unlink(missing_ok=True)


class NonFiniteAggregate(AggregationError):
    """The aggregate holds inf or NaN: storing it would poison every later round."""


def _require_finite(result: RoundResult) -> None:
    for name, value in result.weights.items():
        if not np.isfinite(value).all():
            raise NonFiniteAggregate(f"the aggregate of {name} is not finite")
    for name, value in result.state.to_tensors().items():
        if not np.isfinite(value).all():
            raise NonFiniteAggregate(f"the server optimizer's {name} is not finite")


def effective_max_update_norm(config: ServerConfig, specs: list[TensorSpec]) -> float | None:
    """The configured norm bound, or by default ``10 * sqrt(P)`` for a model of
    ``P`` weights: a delta that moves the weights by 10 each, root mean square,
    is refused. No real fine-tuning step comes near it, and it keeps absurd
    (finite) values such as 3e38 out of the aggregate. ``0`` turns it off."""
    if config.max_update_norm is not None:
        return None if config.max_update_norm == 0 else config.max_update_norm
    parameters = sum(math.prod(int(d or 0) for d in spec.shape) for spec in specs)
    return 10.0 * math.sqrt(max(parameters, 1))


def _digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _receipt(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "round_id": int(row["round_id"]),
        "device_id": str(row["device_id"]),
        "digest": str(row["digest"]),
        "num_examples": int(row["num_examples"]),
        "norm": float(row["norm"]),
        "clipped": bool(row["clipped"]),
        "received_at": float(row["received_at"]),
    }
