"""The releases and their change log in SQLite
(:class:`~fedge.server.storage.store.ReleaseRows`); each change of a
release writes its event through :class:`~.rounds.SQLiteEvents` on the same
connection, so both commit or neither does."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from fedge.server.storage.rounds import json_text
from fedge.server.storage.sql import SqlConnection as Connection
from fedge.server.storage.sqlite.rounds import SQLiteEvents
from fedge.wire.releases import ReleaseChange, ReleaseRecord, Rollout

_COLUMNS = (
    "version, bundle_id, name, source, state, percent, notes, forced_reason, "
    "created_at, created_by, error"
)


def _record(row: sqlite3.Row) -> ReleaseRecord:
    return ReleaseRecord(
        version=int(row["version"]),
        bundle_id=row["bundle_id"],
        name=str(row["name"]),
        source=str(row["source"]),
        state=str(row["state"]),
        percent=float(row["percent"]),
        notes=str(row["notes"]),
        forced_reason=row["forced_reason"],
        created_at=float(row["created_at"]),
        created_by=str(row["created_by"]),
        error=row["error"],
    )


class SQLiteReleases:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._events = SQLiteEvents(conn)

    def _one(self, where: str, value: Any) -> ReleaseRecord | None:
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM releases WHERE {where} = ?", (value,)
        ).fetchone()
        return _record(row) if row is not None else None

    def get(self, version: int) -> ReleaseRecord | None:
        return self._one("version", version)

    def by_bundle(self, bundle_id: str) -> ReleaseRecord | None:
        return self._one("bundle_id", bundle_id)

    def in_state(self, state: str) -> ReleaseRecord | None:
        return self._one("state", state)

    def versions_in_state(self, state: str) -> list[int]:
        rows = self._conn.execute("SELECT version FROM releases WHERE state = ?", (state,))
        return [int(row["version"]) for row in rows.fetchall()]

    def empty(self) -> bool:
        return self._conn.execute("SELECT 1 FROM releases LIMIT 1").fetchone() is None

    def has_source(self, source: str) -> bool:
        row = self._conn.execute("SELECT 1 FROM releases WHERE source = ?", (source,)).fetchone()
        return row is not None

    def recent(self, limit: int) -> list[ReleaseRecord]:
        rows = self._conn.execute(
            f"SELECT {_COLUMNS} FROM releases ORDER BY version DESC LIMIT ?", (limit,)
        ).fetchall()
        return [_record(row) for row in rows]

    def newest_retired(self) -> ReleaseRecord | None:
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM releases WHERE state = 'retired' ORDER BY version DESC LIMIT 1"
        ).fetchone()
        return _record(row) if row is not None else None

    def delivering(self) -> tuple[ReleaseRecord | None, ReleaseRecord | None]:
        # One statement: an autocommit read sees one snapshot for both.
        rows = self._conn.execute(
            f"SELECT {_COLUMNS} FROM releases WHERE state IN ('live', 'canary')"
        ).fetchall()
        records = {record.state: record for record in map(_record, rows)}
        return records.get("live"), records.get("canary")

    def rollout(self) -> Rollout:
        live, candidate = self.delivering()
        return Rollout(
            live=live.version if live is not None else None,
            candidate=candidate.version if candidate is not None else None,
            percent=candidate.percent if candidate is not None else 0.0,
        )

    def insert(
        self,
        *,
        bundle_id: str | None,
        name: str,
        source: str,
        state: str,
        percent: float,
        notes: str,
        forced_reason: str | None,
        created_by: str,
    ) -> ReleaseRecord:
        (newest,) = self._conn.execute("SELECT COALESCE(MAX(version), 0) FROM releases").fetchone()
        self._conn.execute(
            f"INSERT INTO releases ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
            (
                newest + 1,
                bundle_id,
                name,
                source,
                state,
                percent,
                notes,
                forced_reason,
                time.time(),
                created_by,
            ),
        )
        return self._announced(newest + 1)

    def set_state(self, version: int, state: str) -> ReleaseRecord:
        self._conn.execute("UPDATE releases SET state = ? WHERE version = ?", (state, version))
        return self._announced(version)

    def set_percent(self, version: int, percent: float) -> None:
        self._conn.execute("UPDATE releases SET percent = ? WHERE version = ?", (percent, version))
        record = self.get(version)
        assert record is not None
        self._events.add(
            "rollout",
            {"version": version, "bundle_id": record.bundle_id, "percent": percent},
        )

    def set_built(self, version: int, bundle_id: str, state: str, percent: float) -> ReleaseRecord:
        self._conn.execute(
            "UPDATE releases SET bundle_id = ?, state = ?, percent = ? WHERE version = ?",
            (bundle_id, state, percent, version),
        )
        return self._announced(version)

    def set_failed(self, version: int, error: str, expected: str) -> ReleaseRecord | None:
        cursor = self._conn.execute(
            "UPDATE releases SET state = 'failed', error = ? WHERE version = ? AND state = ?",
            (error, version, expected),
        )
        if cursor.rowcount == 0:
            return None
        return self._announced(version)

    def _announced(self, version: int) -> ReleaseRecord:
        """The release as changed in this transaction, and its ``release``
        event: a live release reaches every device not in a candidate's
        slice (100), a candidate its percent, any other none."""
        record = self.get(version)
        assert record is not None  # the callers name a release written in this transaction
        percent = {"live": 100.0, "canary": record.percent}.get(record.state, 0.0)
        payload = {
            "version": record.version,
            "bundle_id": record.bundle_id,
            "state": record.state,
            "percent": percent,
        }
        self._events.add("release", payload)
        return record

    def record_change(
        self,
        actor: str,
        action: str,
        version: int | None,
        why: str | None,
        details: dict[str, Any] | None = None,
    ) -> ReleaseChange:
        at = time.time()
        # RETURNING (SQLite 3.35+, PostgreSQL): the id the database chose.
        (change_id,) = self._conn.execute(
            "INSERT INTO release_changes (at, actor, action, version, why, details) "
            "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
            (at, actor, action, version, why, json_text(details or {})),
        ).fetchone()
        return ReleaseChange(int(change_id), at, actor, action, version, why, details or {})

    def changes(self, limit: int) -> list[ReleaseChange]:
        rows = self._conn.execute(
            "SELECT id, at, actor, action, version, why, details FROM release_changes "
            "ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [_change(row) for row in rows]

    def change(self, change_id: int) -> ReleaseChange | None:
        row = self._conn.execute(
            "SELECT id, at, actor, action, version, why, details FROM release_changes WHERE id = ?",
            (change_id,),
        ).fetchone()
        return _change(row) if row is not None else None


def _change(row: sqlite3.Row) -> ReleaseChange:
    return ReleaseChange(
        int(row["id"]),
        float(row["at"]),
        str(row["actor"]),
        str(row["action"]),
        row["version"],
        row["why"],
        json.loads(row["details"]),
    )
