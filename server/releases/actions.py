"""Changes to the releases: each one call, inside the caller's transaction.

Every function checks first and raises a :class:`~fedge.server.errors.ServerError`
before it writes, so a refusal changes nothing; what it does change is
recorded in the change log (who, when, why) and announced as events (see
:class:`fedge.server.storage.store.ReleaseRows`).

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

from dataclasses import dataclass
from typing import Any

from fedge.server.errors import Conflict, NotFound
from fedge.server.storage.store import Tx
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
    tx: Tx,
    bundle_id: str,
    name: str,
    push: Push,
    failures: list[str],
) -> ReleaseRecord:
    """A verified, checked bundle becomes a release (``failures``: the parity
    failures ``push.force`` overrides, recorded as a ``force`` change)."""
    live, candidate = tx.releases.delivering()
    if candidate is not None:
        tx.releases.set_state(candidate.version, "rolled_back")
    forced = push.force if failures else None
    record = tx.releases.insert(
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
    tx.releases.record_change(push.by, "push", record.version, push.notes or None, details)
    if forced is not None:
        tx.releases.record_change(push.by, "force", record.version, forced, {"parity": failures})
    return record


def add_initial(tx: Tx, bundle_id: str, name: str) -> ReleaseRecord | None:
    """The bundle the server started from, as release 1 (live), unless the
    data directory has releases already."""
    if not tx.releases.empty():
        return None
    why = "the bundle the server started from"
    record = tx.releases.insert(
        bundle_id=bundle_id,
        name=name,
        source="initial",
        state="live",
        percent=100.0,
        notes=why,
        forced_reason=None,
        created_by=INITIAL_ACTOR,
    )
    tx.releases.record_change(
        INITIAL_ACTOR, "initial", record.version, why, {"bundle_id": bundle_id}
    )
    return record


def set_rollout(tx: Tx, percent: float, by: str, why: str | None) -> ReleaseChange:
    _, candidate = tx.releases.delivering()
    if candidate is None:
        raise NotFound("there is no candidate release to roll out", code="no_candidate")
    tx.releases.set_percent(candidate.version, percent)
    details = {"from": candidate.percent, "to": percent}
    return tx.releases.record_change(by, "rollout", candidate.version, why, details)


def promote(
    tx: Tx,
    version: int,
    by: str,
    why: str | None,
    evidence: dict[str, Any] | None = None,
) -> ReleaseChange:
    """``evidence``: recorded in the change's details (the canary's numbers)."""
    record = _release(tx, version)
    if record.state != "canary":
        raise Conflict(
            f"release {version} is {record.state}, not the candidate", code="not_candidate"
        )
    live, _ = tx.releases.delivering()
    if live is not None:
        tx.releases.set_state(live.version, "retired")
    tx.releases.set_state(version, "live")
    details = {"from": live.version if live is not None else None, **(evidence or {})}
    return tx.releases.record_change(by, "promote", version, why, details)


def rollback(
    tx: Tx,
    version: int | None,
    by: str,
    why: str,
    evidence: dict[str, Any] | None = None,
) -> ReleaseChange:
    live, candidate = tx.releases.delivering()
    if live is None:
        raise NotFound("there is no live release to roll back", code="no_release")
    target = _rollback_target(tx, version, live, candidate)
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
        tx.releases.set_state(record.version, "rolled_back")
    if target.version != live.version:
        tx.releases.set_state(target.version, "live")
    details = {"from": live.version, "dropped": [r.version for r in dropped], **(evidence or {})}
    return tx.releases.record_change(by, "rollback", target.version, why, details)


def _rollback_target(
    tx: Tx,
    version: int | None,
    live: ReleaseRecord,
    candidate: ReleaseRecord | None,
) -> ReleaseRecord:
    """The release named, else the latest change undone: the candidate
    dropped (the live release stays), or without one the live release
    before this one."""
    if version is not None:
        return _release(tx, version)
    if candidate is not None:
        return live
    previous = tx.releases.newest_retired()
    if previous is None:
        raise Conflict(
            f"no earlier live release to roll back to from release {live.version}",
            code="nothing_to_roll_back_to",
        )
    return previous


def _release(tx: Tx, version: int) -> ReleaseRecord:
    record = tx.releases.get(version)
    if record is None:
        raise NotFound(f"no release {version}", code="unknown_release")
    return record
