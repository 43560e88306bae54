"""LISTEN/NOTIFY between two stores on one PostgreSQL database (each with
its own connections, as two server processes have): an event or an update
committed through one wakes the other's listener; a rolled-back one does
not; after the database restarts the listener reconnects by itself."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from fedge.server.storage.channels import EVENTS_CHANNEL, UPDATES_CHANNEL
from fedge.server.storage.postgres.store import PostgresStore
from fedge.server.storage.store import StoreUnavailable
from tests.helpers.postgres import PostgresCluster, started


@pytest.fixture
def two(postgres_url: str) -> Iterator[tuple[PostgresStore, PostgresStore]]:
    a, b = PostgresStore.open(postgres_url, 2), PostgresStore.open(postgres_url, 2)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def listening(store: PostgresStore, channel: str) -> threading.Event:
    woken = threading.Event()
    store.listen(channel, woken.set)
    assert store.listener.listening.wait(10)
    woken.clear()  # the first wake-up after connecting is for what may have been missed
    return woken


def test_an_event_committed_by_one_store_wakes_the_other(
    two: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = two
    events, updates = listening(b, EVENTS_CHANNEL), listening(b, UPDATES_CHANNEL)

    with pytest.raises(RuntimeError), a.transaction() as tx:
        tx.events.add("release", {"version": 1})
        raise RuntimeError("rolled back")
    assert not events.wait(0.5)  # nothing committed, nothing delivered

    with a.transaction() as tx:
        tx.events.add("release", {"version": 2})
    assert events.wait(5)
    assert not updates.is_set()  # an event is not an update
    with b.reading() as tx:
        assert [r.kind for r in tx.events.after(0, 10)] == ["release"]


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[PostgresCluster]:
    """A cluster of this module's own: a test stops it, others must not notice."""
    with started() as cluster:
        yield cluster


def test_the_listener_reconnects_after_the_database_restarts(
    own_cluster: PostgresCluster,
) -> None:
    url = own_cluster.new_database("notify_outage")
    a, b = PostgresStore.open(url, 2), PostgresStore.open(url, 2)
    try:
        woken = listening(b, EVENTS_CHANNEL)
        own_cluster.pause()
        try:
            deadline = time.monotonic() + 10
            while b.listener.listening.is_set() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not b.listener.listening.is_set()
        finally:
            own_cluster.resume()
        assert b.listener.listening.wait(15)  # back by itself
        assert woken.wait(5)  # and it said so: something may have been missed
        woken.clear()
        for _ in range(50):  # a's pool may hand out a connection cut by the restart once
            try:
                with a.transaction() as tx:
                    tx.events.add("release", {"version": 3})
                break
            except StoreUnavailable:
                time.sleep(0.1)
        assert woken.wait(5)
    finally:
        a.close()
        b.close()
