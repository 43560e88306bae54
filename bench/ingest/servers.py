"""The servers one measured run uploads to: ``fedge serve`` on SQLite (one
process), or N ``fedge serve --database`` workers on one PostgreSQL
database and data directory, each on a loopback port of its own."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.helpers.live_server import LiveServer, running

# Makes a fresh, empty PostgreSQL database of the given name; returns its URL.
MakeDatabase = Callable[[str], str]
# The throw-away cluster's settings: statement counts for bench.ingest.db_costs.
STATEMENT_STATS = ("shared_preload_libraries=pg_stat_statements",)


@dataclass(frozen=True)
class Databases:
    """Where the PostgreSQL rows' databases come from: ``make`` one, and
    the pid of its cluster's postmaster where that runs here (its CPU is
    measured), else None."""

    make: MakeDatabase
    postmaster: int | None


@dataclass(frozen=True)
class Store:
    """Where the servers keep their state: SQLite (``workers`` 0) or
    ``workers`` processes on one PostgreSQL database."""

    workers: int

    @property
    def name(self) -> str:
        if self.workers == 0:
            return "SQLite"
        return f"PostgreSQL {self.workers} worker{'s' if self.workers > 1 else ''}"


@contextmanager
def postgres_databases(admin_url: str | None) -> Iterator[Databases]:
    """A maker of fresh databases: on ``admin_url``'s server (dropped again
    after the block), or on a throw-away cluster (as the tests start;
    Debian's postgresql package) that preloads ``pg_stat_statements``."""
    if admin_url is not None:
        import psycopg2

        def execute(statement: str) -> None:
            conn = psycopg2.connect(admin_url)
            try:
                conn.autocommit = True
                with conn.cursor() as cursor:
                    cursor.execute(statement)
            finally:
                conn.close()

        made: list[str] = []

        def make(name: str) -> str:
            execute(f'CREATE DATABASE "{name}"')
            made.append(name)
            base, _, _ = admin_url.rpartition("/")
            return f"{base}/{name}"

        try:
            yield Databases(make, None)
        finally:
            for name in made:
                execute(f'DROP DATABASE IF EXISTS "{name}"')
        return
    from bench.ingest.db_costs import postmaster_pid
    from tests.helpers.postgres import started

    with started(STATEMENT_STATS) as cluster:

        def make_counted(name: str) -> str:
            url = cluster.new_database(name)
            cluster.sql("CREATE EXTENSION pg_stat_statements", name)
            return url

        yield Databases(make_counted, postmaster_pid(cluster.data))


@contextmanager
def serving(
    fedge: Path,
    store: Store,
    flags: list[str],
    run: Path,
    database_url: str | None,
) -> Iterator[list[LiveServer]]:
    """The store's server processes, data (and logs) under ``run``, the
    PostgreSQL rows' on ``database_url``; all stopped after the block, also
    on failure."""
    if store.workers == 0:
        with running(run / "data", flags, run / "server.log", fedge=fedge) as server:
            yield [server]
        return
    if database_url is None:
        raise ValueError(f"{store.name} needs a PostgreSQL database")
    with ExitStack() as stack:
        yield [
            stack.enter_context(
                running(
                    run / "data",
                    [*flags, "--database", database_url],
                    run / f"worker-{index}.log",
                    fedge=fedge,
                )
            )
            for index in range(store.workers)
        ]


def cpu_seconds(server: LiveServer) -> float:
    """User + system CPU of one server process so far (Linux /proc)."""
    fields = Path(f"/proc/{server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def aggregator_index(servers: list[LiveServer]) -> int | None:
    """Which of the servers runs the rounds (its /healthz says so), if any."""
    for index, server in enumerate(servers):
        holder = requests.get(f"{server.url}/healthz", timeout=30).json().get("aggregator")
        if holder is not None and holder["this_worker"]:
            return index
    return None
