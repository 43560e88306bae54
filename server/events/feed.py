"""Waking event streams: a condition variable notified after commits that
add events, and the caps on how many streams may wait at once (see
:mod:`fedge.server.devices.slots`).

The events table is the truth (streams read it by id, so nothing is missed
or sent twice); :class:`EventFeed` only says *when* to read it again. The
database calls :meth:`EventFeed.committed` after every commit; it looks at
the table's AUTOINCREMENT counter (one indexed row) and wakes the waiting
streams only when an event was added. With PostgreSQL, events added by
other server processes on the same database wake this one through
LISTEN/NOTIFY (:meth:`EventFeed.wake`, called by the store's listener,
:mod:`fedge.server.storage.postgres.listener`); the log's order is kept
because every writer holds the database's write lock until it commits, so
ids become visible in id order. With SQLite, one process owns the file; a
tool writing to it cannot notify the server: streams also read the table
every :data:`FALLBACK_POLL_S` while they wait.

:meth:`EventFeed.close` wakes every stream for good, so that a stopping
server's request threads end at once instead of at their next heartbeat.
"""

from __future__ import annotations

import logging
import threading

from fedge.server.devices.slots import ClientSlots
from fedge.server.storage.store import StoreError, Tx

log = logging.getLogger("fedge.server")

# How often a waiting stream reads the table although nobody notified it.
FALLBACK_POLL_S = 1.0


class EventFeed:
    """When to read the events table again; ``streams`` and ``polls`` bound
    who may wait."""

    def __init__(
        self, streams: ClientSlots | None = None, polls: ClientSlots | None = None
    ) -> None:
        # Who may hold an open stream, and a waiting long-poll (their own budgets).
        self.streams = streams if streams is not None else ClientSlots(0, 1)
        self.polls = polls if polls is not None else ClientSlots(0, 1)
        self._changed = threading.Condition()
        self._generation = 0  # bumped whenever a commit added events
        self._latest = 0  # the newest event id a commit of this process has shown
        self._closed = False

    @property
    def generation(self) -> int:
        """Read this *before* reading the table, then :meth:`wait` on it: an
        event committed in between has bumped it, so the wait returns at once."""
        with self._changed:
            return self._generation

    @property
    def closed(self) -> bool:
        return self._closed

    def committed(self, tx: Tx) -> None:
        """A transaction committed on ``tx``: wake the streams if it added events."""
        latest: int | None
        try:
            latest = tx.events.last_assigned_id()
        except StoreError as exc:  # the commit stands: wake everyone to be safe
            log.warning("cannot read the events counter: %s", exc)
            latest = None
        with self._changed:
            if latest is None or latest > self._latest:
                self._latest = max(self._latest, latest or 0)
                self._generation += 1
                self._changed.notify_all()

    def wake(self) -> None:
        """Another process committed events (a notification): read again."""
        with self._changed:
            self._generation += 1
            self._changed.notify_all()

    def wait(self, generation: int, timeout: float) -> None:
        """Until events newer than ``generation`` commit, the feed closes or
        ``timeout`` seconds pass (capped at :data:`FALLBACK_POLL_S`)."""
        with self._changed:
            self._changed.wait_for(
                lambda: self._generation != generation or self._closed,
                max(0.0, min(timeout, FALLBACK_POLL_S)),
            )

    def close(self) -> None:
        """The server is stopping: every wait returns now, and at once from now on."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
