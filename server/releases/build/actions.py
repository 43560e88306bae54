"""The release a build makes, in the registry: each change one call inside
the caller's transaction, recorded in the change log and announced.

::

    cut ──> building ──bundle adopted──> canary (live when nothing is)
                │
                └──worker failed, bundle refused, server stopped or restarted──> failed

A building release has no bundle yet (``bundle_id`` null) and keeps the
rollout percent it was asked for. Like a push, its success rolls back an
earlier candidate; its failure changes nothing but its own row.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from fedge.server.errors import Conflict
from fedge.server.storage import releases as store
from fedge.wire.releases import ReleaseRecord

BUILDING = "building"
MAX_ERROR_CHARS = 2000


def checkpoint_file(conn: sqlite3.Connection, checkpoint_id: str) -> tuple[int, str] | None:
    """(the round that made the checkpoint (0: the initial weights), its file
    name under ``checkpoints/``); None for an unknown checkpoint."""
    row = conn.execute(
        "SELECT round_id, path FROM checkpoints WHERE id = ?", (checkpoint_id,)
    ).fetchone()
    return None if row is None else (int(row["round_id"]), str(row["path"]))


def has_source(conn: sqlite3.Connection, source: str) -> bool:
    """Whether any release (in any state) came from ``source`` (``round:<id>``)."""
    return conn.execute("SELECT 1 FROM releases WHERE source = ?", (source,)).fetchone() is not None


def add_building(
    conn: sqlite3.Connection,
    *,
    name: str,
    source: str,
    percent: float,
    notes: str,
    by: str,
    why: str | None,
    details: dict[str, Any],
) -> ReleaseRecord:
    """A new release in state ``building`` (one at a time), and the ``cut`` change."""
    building = store.in_state(conn, BUILDING)
    if building is not None:
        raise Conflict(f"release {building.version} is being built", code="release_building")
    record = store.insert(
        conn,
        bundle_id=None,
        name=name,
        source=source,
        state=BUILDING,
        percent=percent,
        notes=notes,
        forced_reason=None,
        created_by=by,
    )
    store.record_change(conn, by, "cut", record.version, why, details)
    return record


def finish_building(conn: sqlite3.Connection, version: int, bundle_id: str) -> ReleaseRecord:
    """The built bundle becomes the candidate at the percent asked for (or
    live, when nothing is), as a push would."""
    record = _building(conn, version)
    live, candidate = store.delivering(conn)
    if candidate is not None:
        store.set_state(conn, candidate.version, "rolled_back")
    state, percent = ("canary", record.percent) if live is not None else ("live", 100.0)
    conn.execute(
        "UPDATE releases SET bundle_id = ?, state = ?, percent = ? WHERE version = ?",
        (bundle_id, state, percent, version),
    )
    built = store.get(conn, version)
    assert built is not None  # updated just above, in this transaction
    store.announce(conn, built)
    details: dict[str, Any] = {"bundle_id": bundle_id, "state": state, "percent": percent}
    if candidate is not None:
        details["superseded"] = candidate.version
    store.record_change(conn, record.created_by, "built", version, None, details)
    return built


def fail_building(
    conn: sqlite3.Connection, version: int, error: str, actor: str
) -> ReleaseRecord | None:
    """The build ended without a release: state ``failed`` with the error
    (also the change's why). None if the release is not building."""
    error = error[:MAX_ERROR_CHARS]
    cursor = conn.execute(
        "UPDATE releases SET state = 'failed', error = ? WHERE version = ? AND state = ?",
        (error, version, BUILDING),
    )
    if cursor.rowcount == 0:
        return None
    failed = store.get(conn, version)
    assert failed is not None
    store.announce(conn, failed)
    store.record_change(conn, actor, "build_failed", version, error)
    return failed


def fail_interrupted(conn: sqlite3.Connection, actor: str) -> list[int]:
    """At start: every release still ``building`` was cut short by a
    restart (its worker died with the server); returns their versions."""
    rows = conn.execute("SELECT version FROM releases WHERE state = ?", (BUILDING,)).fetchall()
    for row in rows:
        fail_building(conn, int(row["version"]), "interrupted by a restart", actor)
    return [int(row["version"]) for row in rows]


def _building(conn: sqlite3.Connection, version: int) -> ReleaseRecord:
    record = store.get(conn, version)
    if record is None or record.state != BUILDING:
        state = record.state if record is not None else "unknown"
        raise Conflict(f"release {version} is {state}, not being built", code="not_building")
    return record
