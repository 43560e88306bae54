"""The row methods whose SQL the stores cannot share: the events' id
counter, SQLite's ``sqlite_sequence`` row, is a sequence here; and adding
an event or an update notifies the other processes on the database
(:mod:`.listener`: PostgreSQL delivers it when the transaction commits)."""

from __future__ import annotations

from typing import Any

from fedge.server.storage.channels import EVENTS_CHANNEL, UPDATES_CHANNEL
from fedge.server.storage.rounds import UpdateRecord
from fedge.server.storage.sqlite.rounds import SQLiteEvents, SQLiteUpdates


class PostgresEvents(SQLiteEvents):
    def add(self, kind: str, payload: dict[str, Any]) -> None:
        super().add(kind, payload)
        self._conn.execute(f"NOTIFY {EVENTS_CHANNEL}")

    def last_assigned_id(self) -> int:
        # The BIGSERIAL's sequence: one row, and like SQLite's counter it
        # counts ids of rolled-back events too (a sequence is never rolled back).
        (latest,) = self._conn.execute(
            "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM events_id_seq"
        ).fetchone()
        return int(latest)


class PostgresUpdates(SQLiteUpdates):
    def insert(self, update: UpdateRecord) -> UpdateRecord:
        stored = super().insert(update)
        self._conn.execute(f"NOTIFY {UPDATES_CHANNEL}")
        return stored
