"""The events table, read as the public events devices subscribe to.

::

    kind in the table                 type      data
    round_opened, round_closing,      round     round_id, state (open, closing,
    round_closed, round_failed,                 closed, failed, abandoned),
    round_abandoned                             checkpoint or base_checkpoint where
                                                the kind has one, metrics
    release, rollout, health,         the same  the payload as written
    version (async aggregation)

Any other kind is internal and never leaves the server. The payloads
written today hold round ids, checkpoint ids and aggregate metrics, never
a device's id or data, which is what lets the stream be public.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from fedge.server.storage.store import EventRow, EventRows
from fedge.wire.sse import Event

log = logging.getLogger("fedge.server")

EVENT_TYPES = ("round", "release", "rollout", "health", "version")
PAGE = 100  # events read (and at most sent by a long-poll) at a time

_ROUND_STATES = {
    "round_opened": "open",
    "round_closing": "closing",
    "round_closed": "closed",
    "round_failed": "failed",
    "round_abandoned": "abandoned",
}
_PASSED_THROUGH = frozenset({"release", "rollout", "health", "version"})
# Keys of a round kind's payload kept beside the state; the rest are its metrics.
_ROUND_KEYS = ("round_id", "checkpoint", "base_checkpoint")


@dataclass(frozen=True)
class StoredEvent:
    """A row of the events table."""

    id: int
    kind: str
    payload: dict[str, Any]
    created_at: float

    @classmethod
    def from_row(cls, row: EventRow) -> StoredEvent:
        payload = json.loads(row.payload)
        if not isinstance(payload, dict):
            raise ValueError(f"the payload of event {row.id} is not a JSON object")
        return cls(row.id, row.kind, payload, row.created_at)


def public_event(stored: StoredEvent) -> Event | None:
    """The event devices see, or ``None`` for an internal kind."""
    if stored.kind in _PASSED_THROUGH:
        return Event(stored.id, stored.kind, stored.payload, stored.created_at)
    state = _ROUND_STATES.get(stored.kind)
    if state is None:
        return None
    payload = stored.payload
    data: dict[str, Any] = {"round_id": payload.get("round_id"), "state": state}
    data.update({key: payload[key] for key in _ROUND_KEYS[1:] if key in payload})
    metrics = payload.get("metrics")
    if not isinstance(metrics, dict):  # round_closing, round_failed: flat counts
        metrics = {k: v for k, v in payload.items() if k not in _ROUND_KEYS}
    data["metrics"] = metrics
    return Event(stored.id, "round", data, stored.created_at)


@dataclass(frozen=True)
class Page:
    """Public events after an id, in id order."""

    events: list[Event]
    last_id: int  # the newest id read, sent or not (filtered out, internal)
    full: bool  # as many rows as asked for: more may follow at once


def read_after(stored: EventRows, after: int, types: frozenset[str], limit: int = PAGE) -> Page:
    """The public events of ``types`` among the next ``limit`` rows after ``after``."""
    rows = stored.after(after, limit)
    events = []
    for row in rows:
        try:
            event = public_event(StoredEvent.from_row(row))
        except ValueError as exc:  # a row written by hand, say: skipped, not fatal
            log.warning("event %s skipped: %s", row.id, exc)
            continue
        if event is not None and event.type in types:
            events.append(event)
    last_id = rows[-1].id if rows else after
    return Page(events, last_id, len(rows) == limit)
