"""Changes to the releases: each one call, inside the caller's transaction.

Every function checks first and raises a :class:`~fedge.server.errors.ServerError`
before it writes, so a refusal changes nothing; what it does change is
recorded in the change log (who, when, why) and announced as events (see
:mod:`fedge.server.storage.releases`).

The states: a pushed release becomes ``live`` when nothing is, else the
``canary`` (the candidate) at its rollout percent, replacing an earlier
candidate (``rolled_back``). A promotion makes the candidate ``live`` and
the old live release ``retired``. A rollback undoes in one call: to an
earlier release (``retired`` or ``rolled_back``), which becomes ``live``
again while the live release and any candidate become ``rolled_back``; or,
named as the live release itself, it drops the candidate only. Without a
version it undoes the latest change: drops the candidate if there is one,
else goes back to the live release before this one (the newest retired).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from fedge.server.errors import Conflict, NotFound
from fedge.server.storage import releases as store
from fedge.wire.releases import ReleaseChange, ReleaseRecord

INITIAL_ACTOR = "fedge serve"


@dataclass(frozen=True)
class Push:
    """What the admin asked of a push."""

    notes: str
    percent: float
    force: str | None
    by: str


def add_pushed(
    conn: sqlite3.Connection,
    bundle_id: str,
    name: str,
    push: Push,
    failures: list[str],
) -> ReleaseRecord:
    """A verified, checked bundle becomes a release (``failures``: the parity
    failures ``push.force`` overrides, recorded as a ``force`` change)."""
    live, candidate = store.delivering(conn)
    if candidate is not None:
        store.set_state(conn, candidate.version, "rolled_back")
    forced = push.force if failures else None
    record = store.insert(
        conn,
        bundle_id=bundle_id,
        name=name,
        source="push",
        state="canary" if live is not None else "live",
        percent=push.percent if live is not None else 100.0,
        notes=push.notes,
        forced_reason=forced,
        created_by=push.by,
    )
    details = {"bundle_id": bundle_id, "state": record.state, "percent": record.percent}
    if candidate is not None:
        details["superseded"] = candidate.version
    store.record_change(conn, push.by, "push", record.version, push.notes or None, details)
    if forced is not None:
        store.record_change(conn, push.by, "force", record.version, forced, {"parity": failures})
    return record


def add_initial(conn: sqlite3.Connection, bundle_id: str, name: str) -> ReleaseRecord | None:
    """The bundle the server started from, as release 1 (live), unless the
    data directory has releases already."""
    if conn.execute("SELECT 1 FROM releases LIMIT 1").fetchone() is not None:
        return None
    why = "the bundle the server started from"
    record = store.insert(
        conn,
        bundle_id=bundle_id,
        name=name,
        source="initial",
        state="live",
        percent=100.0,
        notes=why,
        forced_reason=None,
        created_by=INITIAL_ACTOR,
    )
    store.record_change(
        conn, INITIAL_ACTOR, "initial", record.version, why, {"bundle_id": bundle_id}
    )
    return record


def set_rollout(
    conn: sqlite3.Connection, percent: float, by: str, why: str | None
) -> ReleaseChange:
    _, candidate = store.delivering(conn)
    if candidate is None:
        raise NotFound("there is no candidate release to roll out", code="no_candidate")
    store.set_percent(conn, candidate.version, percent)
    details = {"from": candidate.percent, "to": percent}
    return store.record_change(conn, by, "rollout", candidate.version, why, details)


def promote(
    conn: sqlite3.Connection,
    version: int,
    by: str,
    why: str | None,
    evidence: dict[str, Any] | None = None,
) -> ReleaseChange:
    """``evidence``: recorded in the change's details (the canary's numbers)."""
    record = _release(conn, version)
    if record.state != "canary":
        raise Conflict(
            f"release {version} is {record.state}, not the candidate", code="not_candidate"
        )
    live, _ = store.delivering(conn)
    if live is not None:
        store.set_state(conn, live.version, "retired")
    store.set_state(conn, version, "live")
    details = {"from": live.version if live is not None else None, **(evidence or {})}
    return store.record_change(conn, by, "promote", version, why, details)


def rollback(
    conn: sqlite3.Connection,
    version: int | None,
    by: str,
    why: str,
    evidence: dict[str, Any] | None = None,
) -> ReleaseChange:
    live, candidate = store.delivering(conn)
    if live is None:
        raise NotFound("there is no live release to roll back", code="no_release")
    target = _rollback_target(conn, version, live, candidate)
    if target.version == live.version:
        if candidate is None:
            raise Conflict(f"release {live.version} is live already", code="already_live")
        dropped = [candidate]  # the canary goes; the live release stays
    elif target.state in ("retired", "rolled_back"):
        dropped = [r for r in (candidate, live) if r is not None]
    else:
        raise Conflict(
            f"release {target.version} is {target.state}: only a retired or rolled-back "
            "release can be made live again",
            code="not_rollbackable",
        )
    for record in dropped:
        store.set_state(conn, record.version, "rolled_back")
    if target.version != live.version:
        store.set_state(conn, target.version, "live")
    details = {"from": live.version, "dropped": [r.version for r in dropped], **(evidence or {})}
    return store.record_change(conn, by, "rollback", target.version, why, details)


def _rollback_target(
    conn: sqlite3.Connection,
    version: int | None,
    live: ReleaseRecord,
    candidate: ReleaseRecord | None,
) -> ReleaseRecord:
    """The release named, else the latest change undone: the candidate
    dropped (the live release stays), or without one the live release
    before this one."""
    if version is not None:
        return _release(conn, version)
    if candidate is not None:
        return live
    previous = store.newest_retired(conn)
    if previous is None:
        raise Conflict(
            f"no earlier live release to roll back to from release {live.version}",
            code="nothing_to_roll_back_to",
        )
    return previous


def _release(conn: sqlite3.Connection, version: int) -> ReleaseRecord:
    record = store.get(conn, version)
    if record is None:
        raise NotFound(f"no release {version}", code="unknown_release")
    return record
