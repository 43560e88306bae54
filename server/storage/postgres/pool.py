"""A bounded pool of PostgreSQL connections, shared by the server's threads.

At most ``size`` connections, opened when first needed and kept; a thread
that finds them all leased waits up to ``wait_s`` and then fails with
:class:`~fedge.server.storage.store.StoreUnavailable` (the request answers
503, as SQLite's busy database does). A connection that comes back broken
(the server restarted or went away) is closed, and so are the idle ones
beside it: they were cut by the same event, and the next unit of work opens
a fresh connection instead of failing once more on a dead one.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg2.extensions

from fedge.server.storage.postgres.errors import translated
from fedge.server.storage.store import StoreUnavailable

Connect = Callable[[], psycopg2.extensions.connection]
_IDLE = psycopg2.extensions.TRANSACTION_STATUS_IDLE


class Pool:
    def __init__(self, connect: Connect, size: int, wait_s: float) -> None:
        self.size = size
        self._connect = connect
        self._wait_s = wait_s
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._idle: list[psycopg2.extensions.connection] = []

    @contextmanager
    def lease(self) -> Iterator[psycopg2.extensions.connection]:
        if not self._slots.acquire(timeout=self._wait_s):
            raise StoreUnavailable(
                f"all {self.size} database connections stayed busy for {self._wait_s:g} s"
            )
        conn = None
        try:
            conn = self._take()
            yield conn
        finally:
            if conn is not None:
                self._give_back(conn)
            self._slots.release()

    def _take(self) -> psycopg2.extensions.connection:
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed:
                    return conn
        with translated():
            return self._connect()

    def _give_back(self, conn: psycopg2.extensions.connection) -> None:
        if not conn.closed and conn.info.transaction_status == _IDLE:
            with self._lock:
                self._idle.append(conn)
            return
        broken = conn.closed == 2  # cut by the server or the network: so are the idle ones
        with contextlib.suppress(Exception):
            conn.close()
        if broken:
            self.close_idle()

    def close_idle(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                conn.close()
