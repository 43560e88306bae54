"""Waking event streams: a condition variable notified after commits that
add events, and the cap on how many streams may wait at once.

The events table is the truth (streams read it by id, so nothing is missed
or sent twice); :class:`EventFeed` only says *when* to read it again. The
database calls :meth:`EventFeed.committed` after every commit; it looks at
the table's AUTOINCREMENT counter (one indexed row) and wakes the waiting
streams only when an event was added. A writer in another process (a tool
on the same data directory) cannot notify this one: streams also read the
table every :data:`FALLBACK_POLL_S` while they wait, and this process's next
commit of anything (the round driver commits every ``tick_s``) reads the
counter too.

:meth:`EventFeed.close` wakes every stream for good, so that a stopping
server's request threads end at once instead of at their next heartbeat.
"""

from __future__ import annotations

import logging
import threading

from fedge.server.storage.store import StoreError, Tx

log = logging.getLogger("fedge.server")

# How often a waiting stream reads the table although nobody notified it.
FALLBACK_POLL_S = 1.0


class EventFeed:
    """When to read the events table again; ``slots`` bounds who may wait."""

    def __init__(self, max_streams: int = 0) -> None:
        self.slots = StreamSlots(max_streams)
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


class StreamSlots:
    """A counter with a limit: one slot per open stream or waiting long-poll."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._in_use = 0

    def acquire(self) -> bool:
        """Take a slot; ``False`` when all are taken."""
        with self._lock:
            if self._in_use >= self.limit:
                return False
            self._in_use += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._in_use -= 1
