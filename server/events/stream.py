"""Serving the event log: the SSE stream's messages, and the long-poll's wait.

Both read the events table by id after a cursor, so a subscriber that
resumes from the last id it saw gets everything after it, once, in order;
the feed only tells them when to read again (see
:mod:`fedge.server.events.feed`). A stream::

    retry: 1000          <- first: the reconnect delay, and the position it
    id: 41                  starts from (what a reconnect would send)
                         <- then events, as they commit; a ": keepalive"
    id: 42                  comment when nothing was sent for a while
    event: round
    data: {...}

    id: 57               <- last (after its time, or when the server stops):
    retry: 1000             where to resume (past filtered-out events)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from fedge.server.events.feed import EventFeed
from fedge.server.events.log import Page, read_after
from fedge.server.storage.store import EventRow, EventRows, Store
from fedge.wire.sse import comment, end, position

RETRY_MS = 1000  # the reconnect delay streams ask of clients


@dataclass(frozen=True)
class Subscription:
    """What one request asked for."""

    after: int  # send events with a larger id
    types: frozenset[str]
    duration_s: float  # the stream ends after this; the long-poll waits at most this


def sse_messages(
    store: Store,
    feed: EventFeed,
    subscription: Subscription,
    keepalive_s: float,
    disconnected: Callable[[], bool] = lambda: False,
) -> Iterator[bytes]:
    """The stream's bytes. Runs in the request's thread; ends after
    ``duration_s``, when the feed closes (the server stops) or when the
    client has gone (``disconnected``)."""
    yield from _stream(_EachRead(store), feed, subscription, keepalive_s, disconnected)


def _stream(
    rows: EventRows,
    feed: EventFeed,
    subscription: Subscription,
    keepalive_s: float,
    disconnected: Callable[[], bool],
) -> Iterator[bytes]:
    cursor = subscription.after
    yield position(cursor, RETRY_MS)
    now = time.monotonic()
    ends_at, keepalive_at = now + subscription.duration_s, now + keepalive_s
    while True:
        generation = feed.generation  # before reading: a commit after it wakes the wait
        page = read_after(rows, cursor, subscription.types)
        cursor = page.last_id
        for event in page.events:
            yield event.encode()
        now = time.monotonic()
        if page.events:
            keepalive_at = now + keepalive_s
        if feed.closed or now >= ends_at or disconnected():
            break
        if page.full:
            continue  # more rows are there already
        if now >= keepalive_at:
            yield comment("keepalive")
            keepalive_at = now + keepalive_s
        feed.wait(generation, min(ends_at, keepalive_at) - now)
    yield end(cursor, RETRY_MS)


class _EachRead:
    """The events table read in a unit of work of its own each time: a
    stream or long-poll that waits holds no database connection meanwhile
    (a PostgreSQL store's pool is shared by every thread)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def add(self, kind: str, payload: dict[str, Any]) -> None:
        raise TypeError("an event stream only reads")

    def after(self, after_id: int, limit: int) -> list[EventRow]:
        with self._store.reading() as tx:
            return tx.events.after(after_id, limit)

    def latest_id(self) -> int:
        with self._store.reading() as tx:
            return tx.events.latest_id()

    def last_assigned_id(self) -> int:
        with self._store.reading() as tx:
            return tx.events.last_assigned_id()


def pending(store: Store, subscription: Subscription) -> Page:
    """The events there are now (a page), without waiting."""
    with store.reading() as tx:
        return read_after(tx.events, subscription.after, subscription.types)


def wait_for_events(store: Store, feed: EventFeed, subscription: Subscription) -> Page:
    """The first page with events after the cursor, or an empty one after
    ``duration_s`` (or when the server stops); ``last_id`` is how far it read."""
    return _wait(_EachRead(store), feed, subscription)


def _wait(rows: EventRows, feed: EventFeed, subscription: Subscription) -> Page:
    deadline = time.monotonic() + subscription.duration_s
    cursor = subscription.after
    while True:
        generation = feed.generation
        page = read_after(rows, cursor, subscription.types)
        if page.events:
            return page
        cursor = page.last_id
        remaining = deadline - time.monotonic()
        if page.full:
            continue  # a page of filtered-out rows: read on at once
        if remaining <= 0 or feed.closed:
            return page
        feed.wait(generation, remaining)
