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

from typing import Any

from fedge.server.errors import Conflict
from fedge.server.storage.store import Tx
from fedge.wire.releases import ReleaseRecord

BUILDING = "building"
MAX_ERROR_CHARS = 2000


def add_building(
    tx: Tx,
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
    building = tx.releases.in_state(BUILDING)
    if building is not None:
        raise Conflict(f"release {building.version} is being built", code="release_building")
    record = tx.releases.insert(
        bundle_id=None,
        name=name,
        source=source,
        state=BUILDING,
        percent=percent,
        notes=notes,
        forced_reason=None,
        created_by=by,
    )
    tx.releases.record_change(by, "cut", record.version, why, details)
    return record


def finish_building(tx: Tx, version: int, bundle_id: str) -> ReleaseRecord:
    """The built bundle becomes the candidate at the percent asked for (or
    live, when nothing is), as a push would."""
    record = _building(tx, version)
    live, candidate = tx.releases.delivering()
    if candidate is not None:
        tx.releases.set_state(candidate.version, "rolled_back")
    state, percent = ("canary", record.percent) if live is not None else ("live", 100.0)
    built = tx.releases.set_built(version, bundle_id, state, percent)
    details: dict[str, Any] = {"bundle_id": bundle_id, "state": state, "percent": percent}
    if candidate is not None:
        details["superseded"] = candidate.version
    tx.releases.record_change(record.created_by, "built", version, None, details)
    return built


def fail_building(tx: Tx, version: int, error: str, actor: str) -> ReleaseRecord | None:
    """The build ended without a release: state ``failed`` with the error
    (also the change's why). None if the release is not building."""
    error = error[:MAX_ERROR_CHARS]
    failed = tx.releases.set_failed(version, error, expected=BUILDING)
    if failed is None:
        return None
    tx.releases.record_change(actor, "build_failed", version, error)
    return failed


def fail_interrupted(tx: Tx, actor: str) -> list[int]:
    """At start: every release still ``building`` was cut short by a
    restart (its worker died with the server); returns their versions."""
    versions = tx.releases.versions_in_state(BUILDING)
    for version in versions:
        fail_building(tx, version, "interrupted by a restart", actor)
    return versions


def _building(tx: Tx, version: int) -> ReleaseRecord:
    record = tx.releases.get(version)
    if record is None or record.state != BUILDING:
        state = record.state if record is not None else "unknown"
        raise Conflict(f"release {version} is {state}, not being built", code="not_building")
    return record
