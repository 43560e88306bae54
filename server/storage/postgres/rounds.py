"""The one row method whose SQL the stores cannot share: the events' id
counter, SQLite's ``sqlite_sequence`` row, is a sequence here."""

from __future__ import annotations

from fedge.server.storage.sqlite.rounds import SQLiteEvents


class PostgresEvents(SQLiteEvents):
    def last_assigned_id(self) -> int:
        # The BIGSERIAL's sequence: one row, and like SQLite's counter it
        # counts ids of rolled-back events too (a sequence is never rolled back).
        (latest,) = self._conn.execute(
            "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM events_id_seq"
        ).fetchone()
        return int(latest)
