"""SQLite's exceptions as the Store's: callers catch
:class:`~fedge.server.storage.store.StoreError` and never learn which
driver raised it.

:class:`Connection` (with :class:`~fedge.server.storage.sql.GuardedCursor`)
stands in for sqlite3's own in the row classes, so that every statement
(and every row fetched: SQLite steps lazily) fails with a Store error; the
Store's units of work translate what the transaction itself raises (BEGIN,
COMMIT, the writer lock).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from fedge.server.storage.sql import GuardedCursor, error_translator
from fedge.server.storage.store import StoreError, StoreFull, StoreUnavailable

# SQLite says "database is locked" or "database table is locked" once the
# busy timeout has passed, and "unable to open database file" when it cannot.
_UNAVAILABLE = ("locked", "busy", "unable to open")


def store_error(exc: sqlite3.Error) -> StoreError:
    """The Store error that stands for ``exc`` (same message)."""
    message = str(exc)
    if isinstance(exc, sqlite3.OperationalError):
        if "full" in message:  # "database or disk is full"
            return StoreFull(message)
        if any(word in message for word in _UNAVAILABLE):
            return StoreUnavailable(message)
    return StoreError(message)


translated = error_translator(sqlite3.Error, store_error)
"""Under ``with translated():`` sqlite3's errors are raised as the Store's."""


class Connection:
    """One sqlite3 connection whose statements fail with Store errors."""

    def __init__(self, raw: sqlite3.Connection) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Sequence[Any] = ()) -> GuardedCursor:
        with translated():
            return GuardedCursor(self.raw.execute(sql, params), translated)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with translated():
            self.raw.executemany(sql, rows)
