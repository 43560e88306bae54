"""What the SQL row classes ask of a connection: statements with ``?``
parameters and rows read by column name or position.

The row classes (:mod:`fedge.server.storage.sqlite`) are written against
this, in the SQL that SQLite and PostgreSQL both speak; each store hands
them its own connection (:class:`fedge.server.storage.sqlite.errors.Connection`,
:class:`fedge.server.storage.postgres.errors.Connection`), which turns its
driver's errors into the Store's and, for PostgreSQL, the few words of
SQLite's dialect into PostgreSQL's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol


class SqlCursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class SqlConnection(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> SqlCursor: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...


class GuardedCursor:
    """A driver's cursor whose reads fail as ``guard`` says (each store's
    ``translated``: its driver's errors become the Store's). SQLite steps
    lazily, so a fetch can fail as well as the statement."""

    def __init__(self, raw: Any, guard: Callable[[], AbstractContextManager[None]]) -> None:
        self._raw = raw
        self._guard = guard

    @property
    def rowcount(self) -> int:
        return int(self._raw.rowcount)

    def fetchone(self) -> Any:
        with self._guard():
            return self._raw.fetchone()

    def fetchall(self) -> list[Any]:
        with self._guard():
            return list(self._raw.fetchall())

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


def error_translator(
    driver_error: type[Exception], store_error: Callable[[Any], Exception]
) -> Callable[[], AbstractContextManager[None]]:
    """A context manager factory (each store's ``translated``) under which
    ``driver_error`` is raised again as ``store_error(exc)``, chained to it."""
    return _Translated(driver_error, store_error)


class _Translated:
    """:func:`error_translator`'s context manager: one object, entered
    around every statement and fetch (a class, not a generator: no
    generator and frames made per use; it keeps no state, so it may be
    entered by any number of threads and nested)."""

    __slots__ = ("_driver_error", "_store_error")

    def __init__(
        self, driver_error: type[Exception], store_error: Callable[[Any], Exception]
    ) -> None:
        self._driver_error = driver_error
        self._store_error = store_error

    def __call__(self) -> _Translated:
        return self

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        if exc is not None and isinstance(exc, self._driver_error):
            raise self._store_error(exc) from exc
