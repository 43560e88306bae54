"""Stores for the contract tests, one kind at a time: SQLite in a data
directory, or PostgreSQL in a database of the session's cluster that
belongs to the data directory (opening the same directory again, as a
restart does, reopens the same database)."""

from __future__ import annotations

import secrets
from pathlib import Path

from fedge.server.storage.postgres.store import PostgresStore
from fedge.server.storage.sqlite.store import SQLiteStore
from fedge.server.storage.store import Store
from tests.helpers.postgres import PostgresCluster

KINDS = ("sqlite", "postgres")


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
