"""The database's side of one measured run: what it spent per update.

A :class:`Probe` reads the database's counters before and after the timed
uploads; :func:`per_update` turns the two readings into costs per update.

- PostgreSQL (:class:`PostgresProbe`): the CPU time of every process of
  the cluster (the postmaster and all its descendants: backends, WAL
  writer, checkpointer ..., from ``/proc``; only for the bench's own
  throw-away cluster, whose postmaster runs on this machine), committed
  transactions of the run's database (``pg_stat_database.xact_commit``),
  top-level statements (``pg_stat_statements``' calls, where the cluster
  preloads it), the database's size (``pg_database_size``) and the WAL
  written (``pg_current_wal_lsn()``, cluster-wide).
- SQLite (:class:`SqliteProbe`): the growth of the database's files (the
  database and its ``-wal``); the rest has no counterpart there.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

# PostgreSQL's statistics (pg_stat_database) reach the shared counters up to
# a second after the backend's commit: a reading waits this long first.
STATS_FLUSH_S = 1.5


@dataclass(frozen=True)
class DbReading:
    """The database's counters at one moment; None where not measurable."""

    cpu_s: float | None = None
    commits: int | None = None
    statements: int | None = None
    size_bytes: int | None = None
    wal_bytes: int | None = None


@dataclass(frozen=True)
class DbCosts:
    """Per update, between two readings; None where not measurable."""

    cpu_ms: float | None = None
    commits: float | None = None
    statements: float | None = None
    size_bytes: float | None = None
    wal_bytes: float | None = None


def per_update(before: DbReading, after: DbReading, updates: int) -> DbCosts:
    """The differences of the two readings, divided by ``updates``."""
    if updates < 1:
        raise ValueError("per_update needs at least one update")

    def delta(field: str, scale: float = 1.0) -> float | None:
        start, end = getattr(before, field), getattr(after, field)
        if start is None or end is None:
            return None
        return float(end - start) * scale / updates

    return DbCosts(
        cpu_ms=delta("cpu_s", 1000.0),
        commits=delta("commits"),
        statements=delta("statements"),
        size_bytes=delta("size_bytes"),
        wal_bytes=delta("wal_bytes"),
    )


def tree_cpu_seconds(root: int, proc: Path = Path("/proc")) -> float:
    """User + system CPU time of process ``root`` and all its descendants
    (children, their children ...) now, from ``proc``'s ``<pid>/stat``.
    Processes that end between the listing and the read are left out."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue  # ended meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        fields = text.rsplit(")", 1)[1].split()
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        ticks[pid] = int(fields[11]) + int(fields[12])  # utime, stime
    if root not in ticks:
        raise ProcessLookupError(f"no process {root} in {proc}")
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += ticks[pid]
        todo.extend(children.get(pid, ()))
    return total / os.sysconf("SC_CLK_TCK")


class Probe(Protocol):
    def read(self) -> DbReading:
        """The database's counters now."""


class SqliteProbe:
    """The SQLite database files' size under a data directory."""

    def __init__(self, data_dir: Path, file_name: str = "fedge.sqlite3") -> None:
        self._files = [data_dir / file_name, data_dir / f"{file_name}-wal"]

    def read(self) -> DbReading:
        return DbReading(size_bytes=sum(f.stat().st_size for f in self._files if f.exists()))


_COUNTERS = """
SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()),
       pg_database_size(current_database()),
       pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint
"""
_STATEMENTS = """
SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


class PostgresProbe:
    """A PostgreSQL database's counters; ``postmaster`` (its cluster's
    postmaster's pid on this machine) for the CPU, None to leave it out."""

    def __init__(self, url: str, postmaster: int | None) -> None:
        import psycopg2

        self._url = url
        self._postmaster = postmaster
        conn = psycopg2.connect(url)
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'")
                self._statements = cursor.fetchone() is not None
        finally:
            conn.close()

    def read(self) -> DbReading:
        import psycopg2

        time.sleep(STATS_FLUSH_S)
        conn = psycopg2.connect(self._url)
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(_COUNTERS)
                row = cursor.fetchone()
                if row is None:
                    raise RuntimeError("PostgreSQL returned no counters")
                commits, size, wal = (int(value) for value in row)
                statements = None
                if self._statements:
                    cursor.execute(_STATEMENTS)
                    found = cursor.fetchone()
                    statements = None if found is None else int(found[0])
        finally:
            conn.close()
        cpu = None if self._postmaster is None else tree_cpu_seconds(self._postmaster)
        return DbReading(cpu, commits, statements, size, wal)


def postmaster_pid(data_dir: Path) -> int:
    """The pid a running cluster's ``postmaster.pid`` names (its first line)."""
    return int((data_dir / "postmaster.pid").read_text().splitlines()[0])
