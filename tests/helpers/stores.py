"""Stores for the contract tests, one kind at a time: SQLite in a data
directory, or PostgreSQL in a database of the session's cluster that
belongs to the data directory (opening the same directory again, as a
restart does, reopens the same database)."""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fedge.server.storage.postgres.store import PostgresStore
from fedge.server.storage.sqlite.store import SQLiteStore
from fedge.server.storage.store import Store
from tests.helpers.postgres import PostgresCluster

KINDS = ("sqlite", "postgres")
IDS = ("sqlite", "postgresql")  # the test ids of KINDS: test_x[sqlite], test_x[postgresql]
SQLITE_FILE = "fedge.sqlite3"  # the SQLite store's file in a data directory


class Stores:
    """Opens the store of a data directory, of one kind."""

    def __init__(self, kind: str, cluster: PostgresCluster | None = None) -> None:
        assert kind == "sqlite" or cluster is not None
        self.kind = kind
        self._cluster = cluster
        self._urls: dict[Path, str] = {}

    def url(self, data_dir: Path) -> str | None:
        """The data directory's database URL (None for SQLite: it is in the directory)."""
        if self._cluster is None:
            return None
        key = data_dir.resolve()
        if key not in self._urls:
            self._urls[key] = self._cluster.new_database(f"t_{secrets.token_hex(6)}")
        return self._urls[key]

    def open(self, data_dir: Path, threads: int = 8) -> Store:
        url = self.url(data_dir)
        if url is None:
            return SQLiteStore.in_data_dir(data_dir)
        return PostgresStore.open(url, threads)

    def serve_args(self, data_dir: Path) -> list[str]:
        """The ``fedge serve`` arguments that put the data directory's server
        on this kind of store (none for SQLite: it is the default)."""
        url = self.url(data_dir)
        return [] if url is None else ["--database", url]

    def rows(self, data_dir: Path, statement: str, params: Sequence[Any] = ()) -> list[Any]:
        """A test's own query (``?`` parameters) on the data directory's
        database, beside a running server (its own connection): the rows."""
        url = self.url(data_dir)
        if url is None:
            with contextlib.closing(sqlite3.connect(data_dir / SQLITE_FILE)) as conn:
                return list(conn.execute(statement, tuple(params)).fetchall())
        import psycopg2

        database = psycopg2.connect(url)
        try:
            cursor = database.cursor()
            cursor.execute(statement.replace("?", "%s"), tuple(params))
            return list(cursor.fetchall())
        finally:
            database.close()

    def dump(self, data_dir: Path) -> str:
        """Every row of every table of the data directory's database, in a
        stable order: equal dumps mean nothing was written in between."""
        if self.url(data_dir) is None:
            tables_sql = "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        else:
            tables_sql = (
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'public' ORDER BY table_name"
            )
        lines = []
        for (table,) in self.rows(data_dir, tables_sql):
            rows = self.rows(data_dir, f'SELECT * FROM "{table}"')
            lines.append(f"{table}: {sorted(repr(row) for row in rows)}")
        return "\n".join(lines)
