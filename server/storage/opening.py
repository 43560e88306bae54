"""Which store a server opens: SQLite in its data directory (the default:
no other service), or PostgreSQL when the ``database`` setting names one
(a ``postgresql://`` URL, as libpq reads it).

A URL that is not one, and a database that cannot be reached or refuses
the server, stop the start with a :class:`ConfigurationError` of one line
(``fedge serve`` prints it and exits 1): a server that cannot store
anything must not start answering devices.
"""

from __future__ import annotations

from pathlib import Path

from fedge.server.errors import ConfigurationError
from fedge.server.storage.store import Store, StoreError

SCHEMES = ("postgresql://", "postgres://")


def check_database(url: str | None) -> None:
    """Raise unless ``url`` is None (SQLite) or a PostgreSQL URL libpq can read."""
    if url is None:
        return
    if not url.startswith(SCHEMES):
        raise ConfigurationError(
            "database must be a postgresql:// URL (leave it out for SQLite in the data directory)"
        )
    from fedge.server.storage.postgres.database import describe

    try:
        describe(url)
    except StoreError as exc:
        raise ConfigurationError(f"database: {exc}") from exc


def open_store(data_dir: Path, database: str | None, threads: int) -> Store:
    """The server's store; ``threads``: its request threads, which size a
    PostgreSQL connection pool."""
    if database is None:
        from fedge.server.storage.sqlite.store import SQLiteStore

        return SQLiteStore.in_data_dir(data_dir)
    check_database(database)
    from fedge.server.storage.postgres.database import describe
    from fedge.server.storage.postgres.store import PostgresStore

    try:
        return PostgresStore.open(database, threads)
    except StoreError as exc:
        raise ConfigurationError(f"cannot open the database {describe(database)}: {exc}") from exc
