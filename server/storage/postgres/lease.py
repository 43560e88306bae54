"""The aggregator's lease on PostgreSQL: a session advisory lock
(``pg_try_advisory_lock``) on a connection of its own.

The holder names itself in that connection's ``application_name``
(``fedge-aggregator <worker id> <epoch seconds it took the lease>``), so
any process finds who holds it, and since when, in ``pg_locks`` joined
with ``pg_stat_activity``: no table to keep in step with the lock. The lock
ends with the connection: a holder killed with SIGKILL loses it as soon as
the database sees its socket close (at once on one host), and the next
try of another process takes it.

A holder checks its connection at every :meth:`AdvisoryLease.hold`; one
that finds it broken (the database restarted, say) has lost the lease,
says so, and competes again like any other process.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

import psycopg2
import psycopg2.extensions

from fedge.server.storage.lease import LeaseHolder
from fedge.server.storage.postgres.errors import store_error

log = logging.getLogger("fedge.server")

# The lock's key, as (classid, objid) of pg_locks: "fedg", "eagg".
KEY = (0x66656467, 0x65616767)
PREFIX = "fedge-aggregator"
_HOLDER = """
SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s
  AND l.objsubid = 2
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


class AdvisoryLease:
    def __init__(
        self,
        connect: Callable[[], psycopg2.extensions.connection],
        worker_id: str,
    ) -> None:
        if " " in worker_id or len(worker_id) > 40:
            raise ValueError("a worker id has no spaces and at most 40 characters")
        self._connect = connect
        self._worker_id = worker_id
        self._conn: psycopg2.extensions.connection | None = None
        self._held = False
        self._lock = threading.Lock()  # one caller at a time on the connection

    @property
    def worker_id(self) -> str:
        return self._worker_id

    def hold(self) -> bool:
        with self._lock:
            try:
                if self._held:
                    self._ping()
                    return True
                return self._try()
            except (psycopg2.Error, OSError) as exc:
                if self._held:
                    log.error("worker %s lost the aggregator's lease: %s", self._worker_id, exc)
                self._drop()
                return False

    def _ping(self) -> None:
        assert self._conn is not None
        with self._conn.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()

    def _try(self) -> bool:
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
            self._conn.autocommit = True
        with self._conn.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", KEY)
            row = cursor.fetchone()
            if row is None or not row[0]:
                return False
            name = f"{PREFIX} {self._worker_id} {time.time():.3f}"
            cursor.execute("SELECT set_config('application_name', %s, false)", (name,))
        self._held = True
        log.info("worker %s holds the aggregator's lease", self._worker_id)
        return True

    def holder(self) -> LeaseHolder | None:
        with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self._connect()
                    self._conn.autocommit = True
                with self._conn.cursor() as cursor:
                    cursor.execute(_HOLDER, KEY)
                    row = cursor.fetchone()
            except psycopg2.Error as exc:
                self._drop()
                raise store_error(exc) from exc
        return None if row is None else parse_holder(str(row[0]))

    def release(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        self._held = False
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()  # a session lock ends with its session
            self._conn = None


def parse_holder(application_name: str) -> LeaseHolder | None:
    parts = application_name.split(" ")
    if len(parts) != 3 or parts[0] != PREFIX:
        return None
    try:
        return LeaseHolder(parts[1], float(parts[2]))
    except ValueError:
        return None
