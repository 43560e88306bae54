"""The SQLite :class:`~fedge.server.storage.store.Store`: a unit of work is
one thread's connection, with the row classes bound to it."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from fedge.server.storage.db import Database
from fedge.server.storage.sqlite.devices import SQLiteDevices
from fedge.server.storage.sqlite.rounds import (
    SQLiteCheckpoints,
    SQLiteEvents,
    SQLiteRounds,
    SQLiteSelections,
    SQLiteServerState,
    SQLiteUpdates,
)
from fedge.server.storage.store import Tx


class SQLiteTx:
    """The tables, read and written through one connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.rounds = SQLiteRounds(conn)
        self.selections = SQLiteSelections(conn)
        self.updates = SQLiteUpdates(conn)
        self.checkpoints = SQLiteCheckpoints(conn)
        self.state = SQLiteServerState(conn)
        self.events = SQLiteEvents(conn)
        self.devices = SQLiteDevices(conn)

    @property
    def connection(self) -> sqlite3.Connection:
        """For SQL of a test's own, and the rows not behind the Store yet."""
        return self._conn


class SQLiteStore:
    """One SQLite file (:class:`~fedge.server.storage.db.Database`: one
    connection per thread, WAL, fsync on commit) behind the Store interface."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @classmethod
    def open(cls, path: Path) -> SQLiteStore:
        return cls(Database(path))

    @property
    def location(self) -> str:
        return str(self.db.path)

    @contextmanager
    def transaction(self, durable: bool = True) -> Iterator[SQLiteTx]:
        with self.db.transaction(durable) as conn:
            yield SQLiteTx(conn)

    @contextmanager
    def reading(self) -> Iterator[SQLiteTx]:
        # Autocommit reads on the thread's connection, as before the Store:
        # each statement sees the latest commit.
        yield SQLiteTx(self.db.connection())

    def on_commit(self, listener: Callable[[Tx], None]) -> None:
        self.db.on_commit(lambda conn: listener(SQLiteTx(conn)))

    def check(self) -> None:
        self.db.connection().execute("SELECT 1").fetchone()

    def close_thread_connection(self) -> None:
        self.db.close_thread_connection()
