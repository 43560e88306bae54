"""psycopg2's exceptions as the Store's, and the connection the row classes
use (:class:`Connection`: their SQL through :mod:`.dialect`, every failure a
:class:`~fedge.server.storage.store.StoreError`).

Unavailable (the same request may succeed later): the server cannot be
reached or went away, it is shutting down or out of connections, a lock
was not granted in time. Full: PostgreSQL's ``disk_full`` (53100). Anything
else (a broken constraint, bad SQL) is a plain StoreError.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import psycopg2
import psycopg2.extensions

from fedge.server.storage.postgres.dialect import parameters, statement
from fedge.server.storage.sql import GuardedCursor, error_translator
from fedge.server.storage.store import StoreError, StoreFull, StoreUnavailable

_DISK_FULL = "53100"


def store_error(exc: psycopg2.Error) -> StoreError:
    """The Store error that stands for ``exc`` (its message, on one line)."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    if exc.pgcode == _DISK_FULL:
        return StoreFull(message)
    if isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError):
        return StoreUnavailable(message)
    return StoreError(message)


translated = error_translator(psycopg2.Error, store_error)
"""Under ``with translated():`` psycopg2's errors are raised as the Store's."""


class Connection:
    """One psycopg2 connection whose statements fail with Store errors; rows
    are read by name or by position (psycopg2's DictCursor), as sqlite3.Row."""

    def __init__(self, raw: psycopg2.extensions.connection) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Sequence[Any] = ()) -> GuardedCursor:
        cursor = self.raw.cursor()
        with translated():
            cursor.execute(statement(sql), parameters(params))
        return GuardedCursor(cursor, translated)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with translated(), self.raw.cursor() as cursor:
            cursor.executemany(statement(sql), [parameters(row) for row in rows])
