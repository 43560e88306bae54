"""The aggregator's lease on PostgreSQL: a session advisory lock
(``pg_try_advisory_lock``) on a connection of its own, with a heartbeat.

The holder names itself in that connection's ``application_name``
(``fedge-aggregator <worker id> <epoch seconds it took the lease>``), so
any process finds who holds it, and since when, in ``pg_locks`` joined
with ``pg_stat_activity``: no table to keep in step with the lock. The lock
ends with the connection: a holder killed with SIGKILL loses it as soon as
the database sees its socket close (at once on one host), and the next
try of another process takes it.

**Heartbeat.** The holder's round driver calls :meth:`AdvisoryLease.hold`
at every step, which runs one statement on the lease's connection: that
connection's ``pg_stat_activity.query_start`` is the heartbeat (nothing
else runs on it; :meth:`holder` reads on a connection of its own). A
holder that is alive but hung (SIGSTOP, a driver stuck in a step) keeps
its socket, and so the lock, but its heartbeat ages: the next process that
tries the lease and finds it older than ``timeout_s`` cuts the holder's
connections (``pg_terminate_backend``: the lease's and every one named
``fedge <its worker id>``, so that a write transaction it stopped in ends
too), takes the lock, and then waits once for the database's write lock,
so that no write of the old holder is still in flight when it rebuilds
the round's state.

**Fencing.** Every write transaction the holder runs inside
:meth:`fenced` checks, right after it takes the write lock, that the
lease's lock is still held by this lease's connection (``pg_locks``);
else it fails with :class:`~fedge.server.storage.store.LeaseLost` and
rolls back. A deposed holder that wakes up therefore cannot fold, close a
round or record a release: its transaction rolls back, and its next
:meth:`hold` finds its connection cut and steps down.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

import psycopg2
import psycopg2.extensions

from fedge.server.storage.lease import LeaseHolder
from fedge.server.storage.postgres.errors import store_error
from fedge.server.storage.store import LeaseLost

if TYPE_CHECKING:
    from fedge.server.storage.postgres.database import PostgresDatabase

log = logging.getLogger("fedge.server")

# The lock's key, as (classid, objid) of pg_locks: "fedg", "eagg".
KEY = (0x66656467, 0x65616767)
PREFIX = "fedge-aggregator"
_HELD = """
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s
  AND l.objsubid = 2
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""
# The holder's lease backend, its name, and its heartbeat's age in seconds.
_HEARTBEAT = (
    "SELECT a.pid, a.application_name,"
    " extract(epoch FROM clock_timestamp() - a.query_start)::float8 " + _HELD
)
_TERMINATE = """
SELECT pg_terminate_backend(pid) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND (pid = %s OR application_name = %s)
"""
_STILL_MINE = """
SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = %s
  AND objid = %s AND objsubid = 2 AND pid = %s
"""
# After cutting a hung holder's connections: how long the lock may take to come free.
_TAKEOVER_WAIT_S = 2.0


def connection_name(worker_id: str) -> str:
    """The ``application_name`` of a worker's pool connections."""
    return f"fedge {worker_id}"


class AdvisoryLease:
    def __init__(self, db: PostgresDatabase, worker_id: str, timeout_s: float = 15.0) -> None:
        """``timeout_s``: a holder whose heartbeat is older is deposed."""
        if " " in worker_id or len(worker_id) > 40:
            raise ValueError("a worker id has no spaces and at most 40 characters")
        if not timeout_s > 0:
            raise ValueError("a lease's timeout is positive")
        self._db = db
        self._worker_id = worker_id
        self._timeout_s = timeout_s
        self._conn: psycopg2.extensions.connection | None = None  # the lock, the heartbeat
        self._watch: psycopg2.extensions.connection | None = None  # holder()'s reads
        self._backend: int | None = None  # the lease connection's backend pid while held
        self._held = False
        self._lock = threading.Lock()  # one caller at a time on the lease's connection
        self._watch_lock = threading.Lock()

    @property
    def worker_id(self) -> str:
        return self._worker_id

    def hold(self) -> bool:
        with self._lock:
            try:
                if self._held:
                    self._beat()
                    return True
                return self._try()
            except (psycopg2.Error, OSError) as exc:
                if self._held:
                    log.error("worker %s lost the aggregator's lease: %s", self._worker_id, exc)
                self._drop()
                return False

    def _beat(self) -> None:
        """The heartbeat: one statement on the lease's connection."""
        assert self._conn is not None
        with self._conn.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()

    def _try(self) -> bool:
        if self._conn is None or self._conn.closed:
            self._conn = self._db.connect()
            self._conn.autocommit = True
        with self._conn.cursor() as cursor:
            if not self._lock_now(cursor) and not self._depose_hung(cursor):
                return False
            # A deposed holder's write may still be in flight: wait for it
            # (the write lock) before this process rebuilds the round's state.
            cursor.execute("BEGIN")
            cursor.execute("SET LOCAL lock_timeout = %s", (f"{self._db.wait_s * 1000:.0f}ms",))
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (self._db.write_lock,))
            cursor.execute("COMMIT")
            name = f"{PREFIX} {self._worker_id} {time.time():.3f}"
            cursor.execute("SELECT set_config('application_name', %s, false)", (name,))
            cursor.execute("SELECT pg_backend_pid()")
            row = cursor.fetchone()
            self._backend = None if row is None else int(row[0])
        self._held = True
        log.info("worker %s holds the aggregator's lease", self._worker_id)
        return True

    @staticmethod
    def _lock_now(cursor: psycopg2.extensions.cursor) -> bool:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", KEY)
        row = cursor.fetchone()
        return row is not None and bool(row[0])

    def _depose_hung(self, cursor: psycopg2.extensions.cursor) -> bool:
        """If the holder's heartbeat is older than the timeout: cut its
        connections and take the lock; True once taken."""
        cursor.execute(_HEARTBEAT, KEY)
        row = cursor.fetchone()
        if row is None or row[2] is None or float(row[2]) <= self._timeout_s:
            return False
        pid, name, age = int(row[0]), str(row[1]), float(row[2])
        holder = parse_holder(name)
        old = holder.worker_id if holder is not None else "?"
        log.warning(
            "worker %s: the aggregator %s has not beaten for %.1f s (more than %.1f s):"
            " cutting its connections and taking the lease",
            self._worker_id,
            old,
            age,
            self._timeout_s,
        )
        cursor.execute(_TERMINATE, (pid, connection_name(old)))
        deadline = time.monotonic() + _TAKEOVER_WAIT_S
        while time.monotonic() < deadline:
            if self._lock_now(cursor):
                return True
            time.sleep(0.05)
        return False

    @contextlib.contextmanager
    def fenced(self) -> Iterator[None]:
        """This thread's write transactions inside the block commit only
        while this lease holds the lock (else :class:`LeaseLost`)."""
        with self._db.fenced(self._still_mine):
            yield

    def _still_mine(self, cursor: psycopg2.extensions.cursor) -> None:
        backend = self._backend
        if backend is not None:
            cursor.execute(_STILL_MINE, (*KEY, backend))
            if cursor.fetchone() is not None:
                return
        raise LeaseLost(f"worker {self._worker_id} no longer holds the aggregator's lease")

    def holder(self) -> LeaseHolder | None:
        with self._watch_lock:
            for attempt in range(2):  # once more on a fresh connection if this one was cut
                try:
                    if self._watch is None or self._watch.closed:
                        self._watch = self._db.connect()
                    with self._watch.cursor() as cursor:
                        cursor.execute(_HEARTBEAT, KEY)
                        row = cursor.fetchone()
                    break
                except psycopg2.Error as exc:
                    self._close_watch()
                    if attempt == 1 or not isinstance(exc, psycopg2.OperationalError):
                        raise store_error(exc) from exc
        if row is None:
            return None
        holder = parse_holder(str(row[1]))
        if holder is None or row[2] is None:
            return holder
        return replace(holder, heartbeat_age_s=float(row[2]))

    def release(self) -> None:
        with self._lock:
            self._drop()
        with self._watch_lock:
            self._close_watch()

    def _drop(self) -> None:
        self._held = False
        self._backend = None
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()  # a session lock ends with its session
            self._conn = None

    def _close_watch(self) -> None:
        if self._watch is not None:
            with contextlib.suppress(Exception):
                self._watch.close()
            self._watch = None


def parse_holder(application_name: str) -> LeaseHolder | None:
    parts = application_name.split(" ")
    if len(parts) != 3 or parts[0] != PREFIX:
        return None
    try:
        return LeaseHolder(parts[1], float(parts[2]))
    except ValueError:
        return None
