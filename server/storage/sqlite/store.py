"""The SQLite :class:`~fedge.server.storage.store.Store`: a unit of work is
one thread's connection, with the row classes bound to it."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from fedge.server.storage.lease import Lease, SoleLease
from fedge.server.storage.sqlite.canary import SQLiteCanary
from fedge.server.storage.sqlite.database import Database
from fedge.server.storage.sqlite.devices import SQLiteDevices
from fedge.server.storage.sqlite.errors import Connection, translated
from fedge.server.storage.sqlite.health import SQLiteHealth
from fedge.server.storage.sqlite.releases import SQLiteReleases
from fedge.server.storage.sqlite.rounds import (
    SQLiteCheckpoints,
    SQLiteEvents,
    SQLiteRounds,
    SQLiteSelections,
    SQLiteServerState,
    SQLiteUpdates,
)
from fedge.server.storage.store import Tx

FILE_NAME = "fedge.sqlite3"  # the database's file in a data directory


class SQLiteTx:
    """The tables, read and written through one connection."""

    def __init__(self, raw: sqlite3.Connection) -> None:
        self._raw = raw
        conn = Connection(raw)
        self.rounds = SQLiteRounds(conn)
        self.selections = SQLiteSelections(conn)
        self.updates = SQLiteUpdates(conn)
        self.checkpoints = SQLiteCheckpoints(conn)
        self.state = SQLiteServerState(conn)
        self.events = SQLiteEvents(conn)
        self.devices = SQLiteDevices(conn)
        self.releases = SQLiteReleases(conn)
        self.canary = SQLiteCanary(conn)
        self.health = SQLiteHealth(conn)

    @property
    def connection(self) -> sqlite3.Connection:
        """For SQL of a test's own."""
        return self._raw

    def __enter__(self) -> SQLiteTx:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class SQLiteStore:
    """One SQLite file (:class:`~.database.Database`: one connection per
    thread, WAL, fsync on commit) behind the Store interface; its errors
    come out as Store errors (:mod:`.errors`)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        # The row classes hold nothing but their connection: each thread's
        # set is made once, not for every read and transaction.
        self._local = threading.local()

    def _tx(self, conn: sqlite3.Connection) -> SQLiteTx:
        tx: SQLiteTx | None = getattr(self._local, "tx", None)
        if tx is None or tx.connection is not conn:
            tx = SQLiteTx(conn)
            self._local.tx = tx
        return tx

    @classmethod
    def open(cls, path: Path) -> SQLiteStore:
        with translated():
            return cls(Database(path))

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> SQLiteStore:
        return cls.open(data_dir / FILE_NAME)

    @property
    def location(self) -> str:
        return str(self.db.path)

    @contextmanager
    def transaction(self, durable: bool = True) -> Iterator[SQLiteTx]:
        # BEGIN, COMMIT and the wait for the writer lock raise sqlite3's
        # errors; the rows' statements raise the Store's already.
        with translated(), self.db.transaction(durable) as conn:
            yield self._tx(conn)

    def reading(self) -> SQLiteTx:
        # Autocommit reads on the thread's connection, as before the Store:
        # each statement sees the latest commit. The thread's tables are
        # their own context manager: nothing to set up or end.
        with translated():
            conn = self.db.connection()
        return self._tx(conn)

    def on_commit(self, listener: Callable[[Tx], None]) -> None:
        self.db.on_commit(lambda conn: listener(self._tx(conn)))

    def listen(self, channel: str, wake: Callable[[], None]) -> None:
        """Nothing to do: one process owns the file (its ``on_commit`` sees every commit)."""

    def aggregator_lease(self, worker_id: str, timeout_s: float = 15.0) -> Lease:
        return SoleLease(worker_id)

    def check(self) -> None:
        with translated():
            self.db.connection().execute("SELECT 1").fetchone()

    def close_thread_connection(self) -> None:
        self.db.close_thread_connection()

    def close(self) -> None:
        self.db.close_thread_connection()
