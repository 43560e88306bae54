"""One PostgreSQL database: the pool of connections, transactions, and the
schema's numbered steps (:mod:`fedge.server.storage.sqlite.migrations`, the
same as SQLite's) applied when the store opens.

Transactions are READ COMMITTED, and every write transaction first takes
one transaction-scoped advisory lock (``pg_advisory_xact_lock``): writers
run one at a time across every process on the database, as SQLite's single
writer does for its file. The row classes' read-then-write steps (the next
round id, a seat count, a compare-and-set of a round's state) were written
for that, and it keeps them right without retry loops; the ``WHERE state
= ?`` compare-and-sets stay as the second guard. Reads outside a
transaction (:meth:`PostgresDatabase.leased` with autocommit) see the
latest commit at each statement, as SQLite's do. A writer waits for the
lock at most ``wait_s`` (``lock_timeout``), then fails as unavailable.

``durable=False`` commits with ``synchronous_commit = off``: atomic, and on
disk a moment later (a crash loses at most the last few, like SQLite's
``synchronous=NORMAL``).

Each thread's unit of work leases a connection from the pool for its
length; a unit nested in another on the same thread shares its connection
(SQLite has one per thread), so a read inside a write sees the write.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg2
import psycopg2.extensions
import psycopg2.extras

from fedge.server.storage.postgres.dialect import ddl
from fedge.server.storage.postgres.errors import translated
from fedge.server.storage.postgres.pool import Pool
from fedge.server.storage.sqlite.migrations import VERSION_TABLE, pending, recorded, refuse_newer
from fedge.server.storage.sqlite.schema import COUNT_DEVICES
from fedge.server.storage.store import StoreError, StoreUnavailable

RawConnection = psycopg2.extensions.connection

# Advisory lock keys (any bigint; these spell "fedgewrt" and "fedgemig").
WRITE_LOCK = 0x6665646765777274
MIGRATION_LOCK = 0x666564676D6967
# How long a writer waits for another one, as SQLite's busy timeout.
BUSY_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 5


def describe(url: str) -> str:
    """``url`` without its password, for messages; a URL psycopg2 cannot
    read is a :class:`StoreError` saying so."""
    try:
        parts = psycopg2.extensions.parse_dsn(url)
    except psycopg2.ProgrammingError as exc:
        raise StoreError(f"not a PostgreSQL URL: {' '.join(str(exc).split())}") from exc
    host = parts.get("host", "localhost")
    port = f":{parts['port']}" if "port" in parts else ""
    user = f"{parts['user']}@" if "user" in parts else ""
    return f"postgresql://{user}{host}{port}/{parts.get('dbname', '')}"


class PostgresDatabase:
    write_lock = WRITE_LOCK

    def __init__(self, url: str, pool_size: int, wait_s: float = BUSY_TIMEOUT_S) -> None:
        self.location = describe(url)
        self._url = url
        self._wait_s = wait_s
        # Names this process's connections in pg_stat_activity (see name()).
        self._application_name = "fedge"
        self.pool = Pool(self.connect, pool_size, wait_s)
        self._local = threading.local()
        self._writer = threading.Lock()  # this process's writers queue here first
        self._commit_listeners: list[Callable[[RawConnection], None]] = []
        self._migrate()

    def connect(self) -> RawConnection:
        """A new connection of this database, outside the pool (autocommit)."""
        conn = psycopg2.connect(
            self._url,
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name=self._application_name,
            cursor_factory=psycopg2.extras.DictCursor,
        )
        conn.autocommit = True  # BEGIN and COMMIT are ours to say
        return conn

    @property
    def wait_s(self) -> float:
        """How long a writer waits for the write lock."""
        return self._wait_s

    def name(self, application_name: str) -> None:
        """Name this process's connections from now on (the idle ones are
        closed, so that every one opened later has the name)."""
        self._application_name = application_name
        self.pool.close_idle()

    @contextmanager
    def fenced(self, check: Callable[[psycopg2.extensions.cursor], None]) -> Iterator[None]:
        """Run ``check`` in each write transaction of this thread inside the
        block, right after it takes the write lock (it raises to roll back)."""
        previous = getattr(self._local, "fence", None)
        self._local.fence = check
        try:
            yield
        finally:
            self._local.fence = previous

    def _migrate(self) -> None:
        # One process at a time (another may be starting on the same database);
        # PostgreSQL's DDL is transactional: a step and its record, or neither.
        with self.leased() as conn, _begun(conn) as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            cursor.execute(ddl(VERSION_TABLE))
            cursor.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")
            row = cursor.fetchone()
            current = 0 if row is None else int(row[0])
            refuse_newer(current, self.location)
            for step in pending(current):
                cursor.execute(ddl(step.script) + recorded(step))
            cursor.execute(ddl(COUNT_DEVICES))

    @contextmanager
    def leased(self) -> Iterator[RawConnection]:
        """The calling thread's connection for one unit of work."""
        held: RawConnection | None = getattr(self._local, "conn", None)
        if held is not None:
            yield held
            return
        with self.pool.lease() as conn:
            self._local.conn = conn
            try:
                yield conn
            finally:
                # A generator's unit of work (an event stream) may be closed by
                # the garbage collector in another thread: clear only our own.
                if getattr(self._local, "conn", None) is conn:
                    self._local.conn = None

    @contextmanager
    def transaction(self, durable: bool = True) -> Iterator[RawConnection]:
        with self.leased() as conn:
            if not self._writer.acquire(timeout=self._wait_s):
                raise StoreUnavailable("database is locked: another writer held it too long")
            try:
                with _begun(conn) as cursor:
                    cursor.execute("SET LOCAL lock_timeout = %s", (f"{self._wait_s * 1000:.0f}ms",))
                    cursor.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                    fence = getattr(self._local, "fence", None)
                    if fence is not None:
                        fence(cursor)
                    if not durable:
                        cursor.execute("SET LOCAL synchronous_commit = off")
                    yield conn
            finally:
                self._writer.release()
            for listener in self._commit_listeners:
                listener(conn)

    def on_commit(self, listener: Callable[[RawConnection], None]) -> None:
        self._commit_listeners.append(listener)

    def close_thread_connection(self) -> None:
        """Nothing to let go of per thread (connections are the pool's), but
        the idle ones close, so that a server shutting down leaves none open."""
        self.pool.close_idle()


@contextmanager
def _begun(conn: RawConnection) -> Iterator[psycopg2.extensions.cursor]:
    """BEGIN ... COMMIT on ``conn``; rolled back on any exception."""
    with translated():
        cursor = conn.cursor()
        cursor.execute("BEGIN")
    try:
        yield cursor
    except BaseException:
        with contextlib.suppress(psycopg2.Error):
            cursor.execute("ROLLBACK")
        raise
    with translated():
        cursor.execute("COMMIT")
