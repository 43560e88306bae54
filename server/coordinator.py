"""The round coordinator: selection, acceptance, closing, recovery.

One coordinator per server process. Its state lives in SQLite and in files
under the data directory; in memory it keeps only what it can rebuild: the
global weights of the current checkpoint and the running weighted sum of
the open round's accepted updates (O(model size), whatever the number of
devices).

An update is acknowledged only after its file is fsynced and its row is
committed, so a crash (even kill -9) never loses an acknowledged update:
at start the coordinator re-adds every stored update of the open round.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from fedge.manifest import TensorSpec
from fedge.server import round_store as rs
from fedge.server.aggregation import StreamingMean
from fedge.server.auth import Device
from fedge.server.config import ServerConfig
from fedge.server.db import Database
from fedge.server.durable import remove_temp_files, write_atomically
from fedge.server.errors import Conflict, Forbidden, NotFound
from fedge.server.metrics import Metrics
from fedge.server.round_strategy import (
    RoundStrategy,
    build_strategy,
    load_strategy_state,
    save_strategy_state,
)
from fedge.server.validation import ValidatedUpdate, validate_update
from fedge.update_codec import Checkpoint, Weights, decode_checkpoint, decode_update

log = logging.getLogger("fedge.server")

CURRENT_CHECKPOINT = "current_checkpoint"


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
        initial_weights: Weights,
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
        self._lock = threading.RLock()
        self._accumulator = StreamingMean()
        self._recover(initial_weights)

    # -- start and recovery -------------------------------------------------

    def _recover(self, initial_weights: Weights) -> None:
        for directory in (self.checkpoint_dir, self.update_dir, self.state_dir):
            removed = remove_temp_files(directory)
            if removed:
                log.warning("removed %d leftover temp files in %s", removed, directory)
        with self.db.transaction() as conn:
            (rounds_closed,) = conn.execute(
                "SELECT COUNT(*) FROM rounds WHERE state = 'closed'"
            ).fetchone()
            current = rs.get_state(conn, CURRENT_CHECKPOINT)
            if current is None:
                current = rs.store_checkpoint(
                    conn, self.checkpoint_dir, Checkpoint(round_id=0, weights=initial_weights)
                )
                rs.set_state(conn, CURRENT_CHECKPOINT, current)
            open_round = rs.open_round_record(conn)
            rows = []
            if open_round is not None:
                rows = conn.execute(
                    "SELECT path, num_examples FROM updates WHERE round_id = ? "
                    "ORDER BY received_at",
                    (open_round.id,),
                ).fetchall()
        self.current_checkpoint = current
        self.global_weights = self._read_checkpoint(current).weights
        self.strategy: RoundStrategy = build_strategy(self.config, int(rounds_closed))
        self.strategy_state = load_strategy_state(self.state_dir, current, int(rounds_closed))
        for row in rows:
            deltas = decode_update((self.update_dir / row["path"]).read_bytes()).deltas
            weight = self.strategy.weight(deltas, int(row["num_examples"]))
            self._accumulator.add(deltas, weight, check_finite=False)
        if open_round is not None:
            log.info("resumed round %d with %d acknowledged updates", open_round.id, len(rows))
            self.metrics.set("fedge_current_round", open_round.id)
            self.metrics.set("fedge_round_updates", len(rows))
        self.tick()

    def _read_checkpoint(self, checkpoint_id: str) -> Checkpoint:
        return decode_checkpoint(
            (self.checkpoint_dir / f"{checkpoint_id}.safetensors").read_bytes()
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
        with self._lock:
            self.tick()
            with self.db.transaction() as conn:
                record = rs.open_round_record(conn)
                if record is None:
                    record = self._open_round(conn)
                return record

    def _open_round(self, conn: Any) -> rs.RoundRecord:
        rounds = self.config.rounds
        record = rs.insert_round(
            conn, self.current_checkpoint, asdict(rounds), time.time(), rounds.deadline_s
        )
        rs.add_event(
            conn, "round_opened", {"round_id": record.id, "base_checkpoint": record.base_checkpoint}
        )
        self._accumulator = StreamingMean()
        self.metrics.set("fedge_current_round", record.id)
        self.metrics.set("fedge_round_updates", 0)
        log.info("opened round %d on checkpoint %s", record.id, record.base_checkpoint[:12])
        return record

    def request_task(self, device: Device, conditions: Conditions) -> TaskDecision:
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE devices SET last_seen = ?, last_asked = ?, idle = ?, charging = ?, "
                "unmetered = ? WHERE id = ?",
                (
                    time.time(),
                    time.time(),
                    conditions.idle,
                    conditions.charging,
                    conditions.unmetered,
                    device.id,
                ),
            )
        rounds = self.config.rounds
        if (
            (rounds.require_idle and not conditions.idle)
            or (rounds.require_charging and not conditions.charging)
            or (rounds.require_unmetered and not conditions.unmetered)
        ):
            return TaskDecision(None, "conditions", retry_after_s=30.0)
        with self._lock:
            record = self.current_round()
            with self.db.transaction() as conn:
                selected = conn.execute(
                    "SELECT 1 FROM selections WHERE round_id = ? AND device_id = ?",
                    (record.id, device.id),
                ).fetchone()
                if selected is None:
                    reason = self._admission_refusal(conn, record, device)
                    if reason:
                        retry = max(0.5, min(5.0, record.deadline_at - time.time()))
                        return TaskDecision(None, reason, retry_after_s=retry)
                    conn.execute(
                        "INSERT INTO selections (round_id, device_id, selected_at) "
                        "VALUES (?, ?, ?)",
                        (record.id, device.id, time.time()),
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

    def checkpoint_bytes(self, checkpoint_id: str) -> bytes:
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT path FROM checkpoints WHERE id = ?", (checkpoint_id,)
            ).fetchone()
        if row is None:
            raise NotFound(f"no checkpoint {checkpoint_id}", code="unknown_checkpoint")
        return (self.checkpoint_dir / str(row["path"])).read_bytes()

    # -- updates -----------------------------------------------------------------

    def accept_update(
        self, device: Device, round_id: int, raw: bytes
    ) -> tuple[dict[str, Any], bool]:
        """Returns (receipt, created). A retry of the same bytes returns the first receipt."""
        with self._lock:
            self.tick()
            with self.db.transaction() as conn:
                existing = self._existing_receipt(conn, round_id, device.id)
                record = rs.round_record(conn, round_id)
                selected = conn.execute(
                    "SELECT 1 FROM selections WHERE round_id = ? AND device_id = ?",
                    (round_id, device.id),
                ).fetchone()
        if existing is not None:
            if existing["digest"] == _digest(raw):
                return existing, False
            raise Conflict(
                "this device already sent a different update for this round",
                code="duplicate_update",
            )
        if record is None:
            raise NotFound(f"no round {round_id}", code="unknown_round")
        if record.state != "open":
            raise Conflict(
                f"round {round_id} is {record.state}; fetch a new task", code="round_closed"
            )
        if selected is None:
            raise Forbidden(
                f"device {device.id} is not selected for round {round_id}", code="not_selected"
            )
        valid = validate_update(
            raw,
            round_id,
            record.base_checkpoint,
            self.specs,
            self.config.max_update_norm,
            self.config.norm_policy,
        )
        valid = self.strategy.prepare_update(valid)
        relative = f"r{round_id:06d}/{device.id}-{valid.digest[:16]}.safetensors"
        write_atomically(self.update_dir / relative, valid.stored_bytes)
        return self._commit_update(device, record, valid, relative), True

    def _existing_receipt(self, conn: Any, round_id: int, device_id: str) -> dict[str, Any] | None:
        row = conn.execute(
            "SELECT * FROM updates WHERE round_id = ? AND device_id = ?", (round_id, device_id)
        ).fetchone()
        return None if row is None else _receipt(row)

    def _commit_update(
        self, device: Device, record: rs.RoundRecord, valid: ValidatedUpdate, relative: str
    ) -> dict[str, Any]:
        with self._lock:
            with self.db.transaction() as conn:
                current = rs.round_record(conn, record.id)
                again = self._existing_receipt(conn, record.id, device.id)
                if again is not None:  # a concurrent retry won the race
                    if again["digest"] == valid.digest:
                        return again
                    raise Conflict(
                        "this device already sent a different update for this round",
                        code="duplicate_update",
                    )
                if current is None or current.state != "open":
                    raise Conflict(
                        f"round {record.id} closed while the update was checked",
                        code="round_closed",
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
                self._close(record)
            return _receipt(row)

    # -- closing ------------------------------------------------------------------

    def tick(self, now: float | None = None) -> None:
        """Close or abandon the open round when its deadline has passed."""
        now = time.time() if now is None else now
        with self._lock:
            with self.db.transaction() as conn:
                record = rs.open_round_record(conn)
            if record is None:
                return
            count = self._accumulator.count
            if count >= self.config.rounds.target_participants:
                self._close(record)
            elif now >= record.deadline_at:
                if count >= self.config.rounds.min_participants:
                    self._close(record)
                else:
                    self._abandon(record, count)

    def end_round_now(self) -> rs.RoundRecord:
        """Admin: end the open round as if its deadline had passed."""
        with self._lock:
            with self.db.transaction() as conn:
                record = rs.open_round_record(conn)
            if record is None:
                raise Conflict("no round is open", code="no_open_round")
            self.tick(now=record.deadline_at)
            with self.db.transaction() as conn:
                ended = rs.round_record(conn, record.id)
            assert ended is not None  # it existed a moment ago, under the lock
            return ended

    def _abandon(self, record: rs.RoundRecord, count: int) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE rounds SET state = 'abandoned', closed_at = ?, metrics = ? WHERE id = ?",
                (time.time(), json.dumps({"updates": count, "reason": "no quorum"}), record.id),
            )
            rs.add_event(conn, "round_abandoned", {"round_id": record.id, "updates": count})
        self._accumulator = StreamingMean()
        self.metrics.inc("fedge_rounds_total", outcome="abandoned")
        self.metrics.set("fedge_current_round", 0)
        log.warning(
            "abandoned round %d: %d updates < minimum %d",
            record.id,
            count,
            self.config.rounds.min_participants,
        )

    def _close(self, record: rs.RoundRecord) -> None:
        started = time.perf_counter()
        with self.db.transaction() as conn:
            rows = conn.execute(
                "SELECT device_id, path, num_examples, norm FROM updates WHERE round_id = ?",
                (record.id,),
            ).fetchall()
            (enrolled,) = conn.execute("SELECT COUNT(*) FROM devices").fetchone()
        result = self.strategy.aggregate(
            self.global_weights,
            self.strategy_state,
            self._accumulator,
            [self.update_dir / r["path"] for r in rows],
            int(enrolled),
        )
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
            conn.execute(
                "UPDATE rounds SET state = 'closed', closed_at = ?, result_checkpoint = ?, "
                "metrics = ? WHERE id = ?",
                (time.time(), new_id, json.dumps(metrics), record.id),
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
        self.current_checkpoint = new_id
        self.global_weights = result.weights
        self.strategy_state = result.state
        self._accumulator = StreamingMean()
        self.metrics.inc("fedge_rounds_total", outcome="closed")
        self.metrics.observe("fedge_aggregation_seconds", seconds)
        self.metrics.set("fedge_current_round", 0)
        log.info(
            "closed round %d: %d updates -> checkpoint %s (%.3f s)",
            record.id,
            len(rows),
            new_id[:12],
            seconds,
        )


def _digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _receipt(row: Any) -> dict[str, Any]:
    return {
        "round_id": int(row["round_id"]),
        "device_id": str(row["device_id"]),
        "digest": str(row["digest"]),
        "num_examples": int(row["num_examples"]),
        "norm": float(row["norm"]),
        "clipped": bool(row["clipped"]),
        "received_at": float(row["received_at"]),
    }
