"""The release registry's rows: releases, the rollout, the change log.

Plain functions over a connection, called inside the caller's transaction
(see :mod:`fedge.server.releases.actions`). The rollout is not stored
apart: the ``live`` release and the ``canary`` one (the candidate) are
states of releases, at most one of each (unique indexes), and the
candidate's share of devices is its ``percent``.

Every change also writes an event (:class:`fedge.server.storage.store.EventRows`)
in the same transaction: ``release`` when a release appears or changes
state, ``rollout`` when the candidate's percent changes.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from fedge.server.storage import rounds as rs
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


def _one(conn: sqlite3.Connection, where: str, value: Any) -> ReleaseRecord | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM releases WHERE {where} = ?", (value,)).fetchone()
    return _record(row) if row is not None else None


def get(conn: sqlite3.Connection, version: int) -> ReleaseRecord | None:
    return _one(conn, "version", version)


def by_bundle(conn: sqlite3.Connection, bundle_id: str) -> ReleaseRecord | None:
    return _one(conn, "bundle_id", bundle_id)


def in_state(conn: sqlite3.Connection, state: str) -> ReleaseRecord | None:
    """The ``live`` release or the ``canary`` (there is at most one of each)."""
    return _one(conn, "state", state)


def recent(conn: sqlite3.Connection, limit: int) -> list[ReleaseRecord]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM releases ORDER BY version DESC LIMIT ?", (limit,)
    ).fetchall()
    return [_record(row) for row in rows]


def newest_retired(conn: sqlite3.Connection) -> ReleaseRecord | None:
    """The newest release that was live and was replaced by a promotion."""
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM releases WHERE state = 'retired' ORDER BY version DESC LIMIT 1"
    ).fetchone()
    return _record(row) if row is not None else None


def delivering(conn: sqlite3.Connection) -> tuple[ReleaseRecord | None, ReleaseRecord | None]:
    """(the live release, the candidate), read in one statement (one snapshot)."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM releases WHERE state IN ('live', 'canary')"
    ).fetchall()
    records = {record.state: record for record in map(_record, rows)}
    return records.get("live"), records.get("canary")


def rollout(conn: sqlite3.Connection) -> Rollout:
    live, candidate = delivering(conn)
    return Rollout(
        live=live.version if live is not None else None,
        candidate=candidate.version if candidate is not None else None,
        percent=candidate.percent if candidate is not None else 0.0,
    )


def insert(
    conn: sqlite3.Connection,
    *,
    bundle_id: str | None,  # None while a release is being built
    name: str,
    source: str,
    state: str,
    percent: float,
    notes: str,
    forced_reason: str | None,
    created_by: str,
) -> ReleaseRecord:
    """A new release, numbered one past the newest."""
    (newest,) = conn.execute("SELECT COALESCE(MAX(version), 0) FROM releases").fetchone()
    conn.execute(
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
    record = get(conn, newest + 1)
    assert record is not None  # inserted just above, in this transaction
    announce(conn, record)
    return record


def set_state(conn: sqlite3.Connection, version: int, state: str) -> ReleaseRecord:
    conn.execute("UPDATE releases SET state = ? WHERE version = ?", (state, version))
    record = get(conn, version)
    assert record is not None  # the callers name a release they read in this transaction
    announce(conn, record)
    return record


def set_percent(conn: sqlite3.Connection, version: int, percent: float) -> None:
    conn.execute("UPDATE releases SET percent = ? WHERE version = ?", (percent, version))
    record = get(conn, version)
    assert record is not None
    SQLiteEvents(conn).add(
        "rollout",
        {"version": version, "bundle_id": record.bundle_id, "percent": percent},
    )


def announce(conn: sqlite3.Connection, record: ReleaseRecord) -> None:
    """The ``release`` event: a live release reaches every device not in a
    candidate's slice (100), a candidate its percent, any other none."""
    percent = {"live": 100.0, "canary": record.percent}.get(record.state, 0.0)
    payload = {
        "version": record.version,
        "bundle_id": record.bundle_id,
        "state": record.state,
        "percent": percent,
    }
    SQLiteEvents(conn).add("release", payload)


def record_change(
    conn: sqlite3.Connection,
    actor: str,
    action: str,
    version: int | None,
    why: str | None,
    details: dict[str, Any] | None = None,
) -> ReleaseChange:
    at = time.time()
    cursor = conn.execute(
        "INSERT INTO release_changes (at, actor, action, version, why, details) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (at, actor, action, version, why, rs.json_text(details or {})),
    )
    return ReleaseChange(int(cursor.lastrowid or 0), at, actor, action, version, why, details or {})


def changes(conn: sqlite3.Connection, limit: int) -> list[ReleaseChange]:
    rows = conn.execute(
        "SELECT id, at, actor, action, version, why, details FROM release_changes "
        "ORDER BY id DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [
        ReleaseChange(
            int(row["id"]),
            float(row["at"]),
            str(row["actor"]),
            str(row["action"]),
            row["version"],
            row["why"],
            json.loads(row["details"]),
        )
        for row in rows
    ]
