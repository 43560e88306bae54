"""Handing out tasks: which device gets a seat in the open round.

A device checks in (``POST /v1/tasks``) with its conditions. In one
transaction the check-in is recorded, the rules of
:mod:`fedge.server.admission` are applied to what the database says, and
an admitted device's seat is taken (a row in ``selections``). Only a
selected device may upload to the round (:mod:`fedge.server.ingest`).
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from fedge.server import admission
from fedge.server import device_store as devices
from fedge.server import round_store as rs
from fedge.server.admission import Refusal, Seats
from fedge.server.auth import Device
from fedge.server.config import RoundConfig
from fedge.server.db import Database
from fedge.server.device_store import Conditions


@dataclass(frozen=True)
class TaskDecision:
    task: dict[str, Any] | None
    reason: str = ""
    retry_after_s: float = 1.0

    @classmethod
    def refused(cls, refusal: Refusal) -> TaskDecision:
        return cls(None, refusal.reason, refusal.retry_after_s)

    def to_json(self) -> dict[str, Any]:
        if self.task is not None:
            return {"task": self.task}
        return {"task": None, "reason": self.reason, "retry_after_s": self.retry_after_s}


class Selector:
    def __init__(
        self, db: Database, rounds: RoundConfig, model_name: str, weight_names: list[str]
    ) -> None:
        self._db = db
        self._rounds = rounds
        self._model_name = model_name
        self._weight_names = list(weight_names)

    def request_task(
        self, device: Device, conditions: Conditions, now: float | None = None
    ) -> TaskDecision:
        now = time.time() if now is None else now
        with self._db.transaction() as conn:
            devices.record_check_in(conn, device.id, conditions, now)
            refusal = admission.conditions_refusal(self._rounds, conditions)
            if refusal is not None:
                return TaskDecision.refused(refusal)
            record = rs.open_round_record(conn)
            if record is None:
                return TaskDecision.refused(admission.NO_OPEN_ROUND)
            if not is_selected(conn, record.id, device.id):
                seats = self._seats(conn, record, now)
                refusal = admission.seat_refusal(seats, device.participations, now)
                if refusal is not None:
                    return TaskDecision.refused(refusal)
                conn.execute(
                    "INSERT INTO selections (round_id, device_id, selected_at) VALUES (?, ?, ?)",
                    (record.id, device.id, now),
                )
            contributed = has_contributed(conn, record.id, device.id)
        if contributed:
            return TaskDecision.refused(admission.ALREADY_CONTRIBUTED)
        return TaskDecision(task_for(record, self._model_name, self._weight_names))

    def _seats(self, conn: sqlite3.Connection, record: rs.RoundRecord, now: float) -> Seats:
        (taken,) = conn.execute(
            "SELECT COUNT(*) FROM selections WHERE round_id = ?", (record.id,)
        ).fetchone()
        return Seats(
            taken=int(taken),
            slots=self._rounds.selection_slots,
            least_participations=devices.least_participations(
                conn, admission.active_since(self._rounds, now)
            ),
            opened_at=record.opened_at,
            deadline_at=record.deadline_at,
        )


def is_selected(conn: sqlite3.Connection, round_id: int, device_id: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM selections WHERE round_id = ? AND device_id = ?", (round_id, device_id)
    ).fetchone()
    return row is not None


def has_contributed(conn: sqlite3.Connection, round_id: int, device_id: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM updates WHERE round_id = ? AND device_id = ?", (round_id, device_id)
    ).fetchone()
    return row is not None


def task_for(record: rs.RoundRecord, model_name: str, weight_names: list[str]) -> dict[str, Any]:
    """What a selected device needs to train for the round and upload."""
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
        "model": model_name,
        "weights": list(weight_names),
    }
