"""The PostgreSQL :class:`~fedge.server.storage.store.Store`: a unit of work
is one leased connection (:class:`~.database.PostgresDatabase`), with the
SQLite store's row classes bound to it through :class:`~.errors.Connection`
(their SQL is shared; :mod:`.dialect` says how it is rewritten)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from fedge.server.storage.channels import EVENTS_CHANNEL, UPDATES_CHANNEL
from fedge.server.storage.lease import Lease
from fedge.server.storage.postgres.database import PostgresDatabase, RawConnection
from fedge.server.storage.postgres.errors import Connection, translated
from fedge.server.storage.postgres.lease import AdvisoryLease, connection_name
from fedge.server.storage.postgres.listener import Listener
from fedge.server.storage.postgres.rounds import PostgresEvents, PostgresUpdates
from fedge.server.storage.sqlite.canary import SQLiteCanary
from fedge.server.storage.sqlite.devices import SQLiteDevices
from fedge.server.storage.sqlite.health import SQLiteHealth
from fedge.server.storage.sqlite.releases import SQLiteReleases
from fedge.server.storage.sqlite.rounds import (
    SQLiteCheckpoints,
    SQLiteRounds,
    SQLiteSelections,
    SQLiteServerState,
)
from fedge.server.storage.store import Tx

# Connections beyond the request threads: the round driver, the release
# builder, device expiry and the deadline watch each hold one at times.
BACKGROUND_CONNECTIONS = 4


class PostgresTx:
    """The tables, read and written through one connection."""

    def __init__(self, raw: RawConnection) -> None:
        conn = Connection(raw)
        self.connection = conn  # for SQL of a test's own (``?`` parameters)
        self.rounds = SQLiteRounds(conn)
        self.selections = SQLiteSelections(conn)
        self.updates = PostgresUpdates(conn)
        self.checkpoints = SQLiteCheckpoints(conn)
        self.state = SQLiteServerState(conn)
        self.events = PostgresEvents(conn)
        self.devices = SQLiteDevices(conn)
        self.releases = SQLiteReleases(conn)
        self.canary = SQLiteCanary(conn)
        self.health = SQLiteHealth(conn)


class PostgresStore:
    """A PostgreSQL database behind the Store interface (``postgresql://``
    URL, as libpq reads it); its errors come out as Store errors."""

    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db
        # Started by the first listen(): a connection and a thread of its own.
        self.listener = Listener(db.connect, (EVENTS_CHANNEL, UPDATES_CHANNEL))

    @classmethod
    def open(cls, url: str, threads: int) -> PostgresStore:
        """Connect, and bring the schema up to date; ``threads``: the
        server's, which size the pool."""
        return cls(PostgresDatabase(url, threads + BACKGROUND_CONNECTIONS))

    @property
    def location(self) -> str:
        return self.db.location

    @contextmanager
    def transaction(self, durable: bool = True) -> Iterator[PostgresTx]:
        with translated(), self.db.transaction(durable) as conn:
            yield PostgresTx(conn)

    @contextmanager
    def reading(self) -> Iterator[PostgresTx]:
        # Autocommit statements on a leased connection: each sees the latest commit.
        with translated(), self.db.leased() as conn:
            yield PostgresTx(conn)

    def on_commit(self, listener: Callable[[Tx], None]) -> None:
        self.db.on_commit(lambda conn: listener(PostgresTx(conn)))

    def listen(self, channel: str, wake: Callable[[], None]) -> None:
        self.listener.add(channel, wake)

    def aggregator_lease(self, worker_id: str, timeout_s: float = 15.0) -> Lease:
        # The lease's holder, when it finds this worker hung, cuts its connections by name.
        self.db.name(connection_name(worker_id))
        return AdvisoryLease(self.db, worker_id, timeout_s)

    def check(self) -> None:
        with translated(), self.db.leased() as conn, conn.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()

    def close_thread_connection(self) -> None:
        self.db.close_thread_connection()

    def close(self) -> None:
        self.listener.stop()
        self.db.close_thread_connection()
