"""The aggregator's lease on PostgreSQL, in one process with two stores
(two workers' pools) on one real database: a holder whose heartbeat is
fresh keeps it; one whose heartbeat is older than the timeout is deposed
(its connections cut), and its writes under ``fenced()`` then roll back
with LeaseLost, also on a fresh connection."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from fedge.server.storage.postgres.store import PostgresStore
from fedge.server.storage.store import LeaseLost, StoreUnavailable

TIMEOUT_S = 0.5


@pytest.fixture
def stores(postgres_url: str) -> Iterator[tuple[PostgresStore, PostgresStore]]:
    with ExitStack() as stack:
        pair = []
        for _ in range(2):
            store = PostgresStore.open(postgres_url, threads=2)
            stack.callback(store.close)
            pair.append(store)
        with pair[0].transaction() as tx:
            tx.connection.execute("CREATE TABLE probe (x INTEGER)")
        yield pair[0], pair[1]


def probes(store: PostgresStore) -> list[int]:
    with store.reading() as tx:
        return [int(row[0]) for row in tx.connection.execute("SELECT x FROM probe ORDER BY x")]


def test_a_fresh_heartbeat_keeps_the_lease(stores: tuple[PostgresStore, PostgresStore]) -> None:
    first, second = stores
    a, b = first.aggregator_lease("a", TIMEOUT_S), second.aggregator_lease("b", TIMEOUT_S)
    try:
        assert a.hold()
        until = time.monotonic() + 3 * TIMEOUT_S
        while time.monotonic() < until:  # a beats every 0.1 s; b tries as often
            assert a.hold()
            assert not b.hold()
            time.sleep(0.1)
        holder = b.holder()
        assert holder is not None and holder.worker_id == "a"
    finally:
        a.release()
        b.release()


def test_a_stale_holder_is_deposed_and_its_fenced_writes_roll_back(
    stores: tuple[PostgresStore, PostgresStore],
) -> None:
    first, second = stores
    a, b = first.aggregator_lease("a", TIMEOUT_S), second.aggregator_lease("b", TIMEOUT_S)
    try:
        assert a.hold()
        with a.fenced(), first.transaction() as tx:  # the holder writes
            tx.connection.execute("INSERT INTO probe (x) VALUES (1)")
        assert not b.hold()  # a's heartbeat is fresh

        time.sleep(TIMEOUT_S + 0.3)  # a hangs: no heartbeat
        assert b.hold()  # b cut a's connections and took the lock
        holder = a.holder()
        assert holder is not None and holder.worker_id == "b"

        # a wakes. Its pooled connection was cut: the first write fails on it;
        # the next one, on a fresh connection, is refused by the fence.
        with pytest.raises(StoreUnavailable), a.fenced(), first.transaction() as tx:
            tx.connection.execute("INSERT INTO probe (x) VALUES (2)")
        with pytest.raises(LeaseLost), a.fenced(), first.transaction() as tx:
            tx.connection.execute("INSERT INTO probe (x) VALUES (3)")
        with first.transaction() as tx:  # unfenced (an upload's) writes go on
            tx.connection.execute("INSERT INTO probe (x) VALUES (4)")
        assert not a.hold()  # its lease connection is gone: it steps down

        with b.fenced(), second.transaction() as tx:  # the new holder writes
            tx.connection.execute("INSERT INTO probe (x) VALUES (5)")
        assert probes(second) == [1, 4, 5]
        assert not a.hold()  # and it does not get the lease back while b beats
        assert b.hold()
    finally:
        a.release()
        b.release()
