"""The SQLite file: schema, one connection per thread, transactions.

A connection is opened the first time a thread asks for one and kept for
the thread's life (request threads are pooled, so this is one per worker,
not one per request); :meth:`Database.close_thread_connection` closes the
calling thread's one when the server shuts down.

WAL mode with ``synchronous=FULL``: a committed transaction is on disk
before the commit returns, which is what "acknowledged" means here
(:meth:`Database.transaction` with ``durable=False`` is the exception, for
what needs no acknowledgement: a device's check-in). The
file is created 0600 (SQLite gives its WAL and shared-memory files the
same mode). The schema is built and upgraded by the numbered steps of
:mod:`.migrations` (the same for the PostgreSQL store), each recorded in
the ``schema_version`` table when opened; files of release 3 and older
numbered theirs in ``PRAGMA user_version``, which is read once.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from fedge.server.storage.sqlite.migrations import (
    LATEST,
    VERSION_TABLE,
    pending,
    recorded,
    refuse_newer,
)
from fedge.server.storage.sqlite.schema import COUNT_DEVICES, SCHEMA

# How long a writer waits for another one before "database is locked".
BUSY_TIMEOUT_S = 30.0

# Version 1 had no 'closing' or 'failed' round states (a CHECK constraint,
# which SQLite cannot alter: the table is copied) and no enrolment requests.
_MIGRATE_FROM_1 = """
ALTER TABLE rounds RENAME TO rounds_v1;
{rounds}
INSERT INTO rounds SELECT * FROM rounds_v1;
DROP TABLE rounds_v1;
ALTER TABLE devices ADD COLUMN enrol_request TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS devices_by_enrol_request ON devices(enrol_request);
"""

# Version 2 had no identity-token subjects.
_MIGRATE_FROM_2 = "ALTER TABLE devices ADD COLUMN subject TEXT;"


class Database:
    """Opens connections to one SQLite file; each thread gets its own."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._commit_listeners: list[Callable[[sqlite3.Connection], None]] = []
        self._writer = threading.Lock()  # one transaction of this process at a time
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        self._migrate()

    def _migrate(self) -> None:
        conn = self.connection()
        conn.executescript(VERSION_TABLE)
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        (stepped,) = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
        has_tables = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'rounds'").fetchone()
        # Files written before the schema_version table (release 3 and older)
        # say their version in PRAGMA user_version; an empty file has none.
        current = int(stepped) or (int(version) if has_tables else 0)
        refuse_newer(current, str(self.path))
        if has_tables and current < 2:
            rounds = SCHEMA[SCHEMA.index("CREATE TABLE IF NOT EXISTS rounds") :]
            rounds = rounds[: rounds.index(";") + 1]
            conn.execute("PRAGMA foreign_keys=OFF")
            conn.executescript(
                "BEGIN IMMEDIATE;" + _MIGRATE_FROM_1.format(rounds=rounds) + "COMMIT;"
            )
            conn.execute("PRAGMA foreign_keys=ON")
        if has_tables and current < 3:
            conn.executescript("BEGIN IMMEDIATE;" + _MIGRATE_FROM_2 + "COMMIT;")
        # Each step and its row in schema_version commit together.
        for step in pending(current):
            conn.executescript("BEGIN IMMEDIATE;" + step.script + recorded(step) + "COMMIT;")
        conn.executescript("BEGIN IMMEDIATE;" + COUNT_DEVICES + "COMMIT;")
        conn.execute(f"PRAGMA user_version = {LATEST}")

    def connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; rolled back on any exception.

        ``durable=False``: the commit does not wait for the disk
        (``synchronous=NORMAL`` for this transaction), for records whose
        loss in a power cut costs nothing but a repeat, such as a device's
        check-in. It is still atomic, and the next durable commit (WAL:
        one sequential log) puts it on disk too."""
        conn = self.connection()
        # This process's writers queue here, not in SQLite's busy handler,
        # which polls with sleeps of up to 100 ms: a commit waiting for the
        # disk would otherwise stall every check-in behind it for longer.
        if not self._writer.acquire(timeout=BUSY_TIMEOUT_S):
            raise sqlite3.OperationalError("database is locked")
        try:
            if not durable:
                conn.execute("PRAGMA synchronous=NORMAL")
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            finally:
                if not durable:
                    conn.execute("PRAGMA synchronous=FULL")
        finally:
            self._writer.release()
        for listener in self._commit_listeners:
            listener(conn)

    def on_commit(self, listener: Callable[[sqlite3.Connection], None]) -> None:
        """Call ``listener(conn)`` after every commit of :meth:`transaction`,
        in the committing thread (the event feed wakes its subscribers so)."""
        self._commit_listeners.append(listener)

    def close_thread_connection(self) -> None:
        """Close the calling thread's connection, if it opened one. Connections
        of other threads are closed by SQLite when their threads' objects go."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
