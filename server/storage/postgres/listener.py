"""LISTEN/NOTIFY: what another process committed wakes this one.

Every server process on a PostgreSQL database runs one :class:`Listener`:
a thread with a connection of its own (not the pool's) that ``LISTEN``\\ s
on the store's channels and waits in ``select()`` on its socket. A
transaction that adds an event or an update sends ``pg_notify`` before it
commits (:mod:`.rounds`); PostgreSQL delivers it to every listener when,
and only if, the transaction commits, so a wake-up never comes before the
rows are visible.

A notification only says *when* to read the tables again (they are the
truth, read by id or by arrival). So a lost one costs a delay, not data:
when the connection breaks (the database restarts, say) the thread opens a
new one every :data:`RETRY_S` and, once listening again, wakes every
callback once, for whatever was committed while it was away.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
from collections.abc import Callable, Sequence

import psycopg2
import psycopg2.extensions

log = logging.getLogger("fedge.server")

RETRY_S = 1.0  # between attempts to reconnect after an outage
Wake = Callable[[], None]


class Listener:
    """Calls the callbacks of a channel when any process notifies it."""

    def __init__(
        self,
        connect: Callable[[], psycopg2.extensions.connection],
        channels: Sequence[str],
        retry_s: float = RETRY_S,
    ) -> None:
        self._connect = connect
        self._channels = tuple(channels)
        self._retry_s = retry_s
        self._callbacks: dict[str, list[Wake]] = {c: [] for c in self._channels}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()  # ends select() at once on stop
        self.listening = threading.Event()  # set while LISTEN is in effect
        self._thread = threading.Thread(target=self._run, name="fedge-listen", daemon=True)
        self._started = False

    def add(self, channel: str, wake: Wake) -> None:
        """Call ``wake`` (on the listener's thread: keep it short) whenever
        ``channel`` is notified, and after every reconnection."""
        if channel not in self._callbacks:
            raise ValueError(f"not a channel of this listener: {channel!r}")
        with self._lock:
            self._callbacks[channel].append(wake)
            if not self._started:
                self._started = True
                self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        if self._started and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _run(self) -> None:
        while not self._stop.is_set():
            conn = None
            try:
                conn = self._connect()
                conn.autocommit = True
                with conn.cursor() as cursor:
                    for channel in self._channels:
                        cursor.execute(f"LISTEN {channel}")
                self.listening.set()
                self._wake(self._channels)  # whatever committed while we were not listening
                self._serve(conn)
            except (psycopg2.Error, OSError) as exc:
                if not self._stop.is_set():
                    log.warning("event listener lost the database (%s); retrying", exc)
            finally:
                self.listening.clear()
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
            self._stop.wait(self._retry_s)

    def _serve(self, conn: psycopg2.extensions.connection) -> None:
        while not self._stop.is_set():
            readable, _, _ = select.select([conn, self._wake_r], [], [])
            if self._wake_r in readable:
                return
            conn.poll()  # raises on a broken connection
            channels = {n.channel for n in conn.notifies}
            conn.notifies.clear()
            self._wake(channels)

    def _wake(self, channels: Sequence[str] | set[str]) -> None:
        with self._lock:
            callbacks = [wake for c in channels for wake in self._callbacks.get(c, [])]
        for wake in callbacks:
            try:
                wake()
            except Exception:
                log.exception("a notification's callback failed")
