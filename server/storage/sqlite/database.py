"""The SQLite file: schema, one connection per thread, transactions.

A connection is opened the first time a thread asks for one and kept for
the thread's life (request threads are pooled, so this is one per worker,
not one per request); :meth:`Database.close_thread_connection` closes the
calling thread's one when the server shuts down.

WAL mode with ``synchronous=FULL``: a committed transaction is on disk
before the commit returns, which is what "acknowledged" means here
(:meth:`Database.transaction` with ``durable=False`` is the exception, for
what needs no acknowledgement: a device's check-in). The
file is created 0600 (SQLite gives its WAL and shared-memory files the
same mode). ``PRAGMA user_version`` numbers the schema; older files are
migrated when opened.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from fedge.server.storage.sqlite.health import SCHEMA as HEALTH_SCHEMA

SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    platform TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    last_seen REAL NOT NULL,
    idle INTEGER NOT NULL DEFAULT 0,
    charging INTEGER NOT NULL DEFAULT 0,
    unmetered INTEGER NOT NULL DEFAULT 0,
    participations INTEGER NOT NULL DEFAULT 0,
    last_asked REAL NOT NULL DEFAULT 0,
    enrol_request TEXT UNIQUE,
    subject TEXT
);
-- One device per subject of an identity token (stored hashed), when enrolment needs one.
CREATE UNIQUE INDEX IF NOT EXISTS devices_by_subject ON devices(subject);
-- Devices not seen for device_ttl_s are found by it.
CREATE INDEX IF NOT EXISTS devices_by_last_seen ON devices(last_seen);
CREATE TABLE IF NOT EXISTS checkpoints (
    id TEXT PRIMARY KEY,
    round_id INTEGER NOT NULL,
    path TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rounds (
    id INTEGER PRIMARY KEY,
    state TEXT NOT NULL
        CHECK (state IN ('open', 'closing', 'closed', 'failed', 'abandoned')),
    base_checkpoint TEXT NOT NULL REFERENCES checkpoints(id),
    config TEXT NOT NULL,
    opened_at REAL NOT NULL,
    deadline_at REAL NOT NULL,
    closed_at REAL,
    result_checkpoint TEXT REFERENCES checkpoints(id),
    metrics TEXT NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX IF NOT EXISTS one_open_round ON rounds(state) WHERE state = 'open';
CREATE UNIQUE INDEX IF NOT EXISTS one_closing_round ON rounds(state) WHERE state = 'closing';
CREATE TABLE IF NOT EXISTS selections (
    round_id INTEGER NOT NULL REFERENCES rounds(id),
    device_id TEXT NOT NULL REFERENCES devices(id),
    selected_at REAL NOT NULL,
    PRIMARY KEY (round_id, device_id)
);
CREATE TABLE IF NOT EXISTS updates (
    round_id INTEGER NOT NULL REFERENCES rounds(id),
    device_id TEXT NOT NULL REFERENCES devices(id),
    digest TEXT NOT NULL,
    num_examples INTEGER NOT NULL,
    norm REAL NOT NULL,
    clipped INTEGER NOT NULL,
    path TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    metrics TEXT NOT NULL DEFAULT '{}',
    received_at REAL NOT NULL,
    PRIMARY KEY (round_id, device_id)
);
CREATE INDEX IF NOT EXISTS updates_by_digest ON updates(round_id, digest);
CREATE TABLE IF NOT EXISTS server_state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS releases (
    version INTEGER PRIMARY KEY,
    bundle_id TEXT UNIQUE,
    name TEXT NOT NULL,
    source TEXT NOT NULL,
    state TEXT NOT NULL
        CHECK (state IN ('building', 'failed', 'canary', 'live', 'rolled_back', 'retired')),
    percent REAL NOT NULL DEFAULT 0,
    notes TEXT NOT NULL DEFAULT '',
    forced_reason TEXT,
    created_at REAL NOT NULL,
    created_by TEXT NOT NULL,
    error TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS one_live_release ON releases(state) WHERE state = 'live';
CREATE UNIQUE INDEX IF NOT EXISTS one_canary_release ON releases(state) WHERE state = 'canary';
CREATE TABLE IF NOT EXISTS release_changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    version INTEGER REFERENCES releases(version),
    why TEXT,
    details TEXT NOT NULL DEFAULT '{}'
);
-- Canary evaluations: a device's numbers only (fedge.server.storage.canary).
CREATE TABLE IF NOT EXISTS canary_evaluations (
    version INTEGER NOT NULL REFERENCES releases(version),
    device_id TEXT NOT NULL REFERENCES devices(id),
    baseline_version INTEGER NOT NULL,
    metric TEXT NOT NULL,
    candidate_loss REAL NOT NULL,
    candidate_metric REAL NOT NULL,
    baseline_loss REAL NOT NULL,
    baseline_metric REAL NOT NULL,
    num_examples INTEGER NOT NULL,
    latency_ms REAL NOT NULL,
    using_model TEXT NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (version, device_id)
);
-- The runtime a canary device ran the candidate on and its parity on the
-- bundle's golden inputs (issue 23); optional, so a table of its own (an
-- older file gains it when opened, nothing to migrate).
CREATE TABLE IF NOT EXISTS canary_parity (
    version INTEGER NOT NULL,
    device_id TEXT NOT NULL,
    runtime TEXT NOT NULL,
    max_abs_error REAL,
    top1_agreement REAL,
    samples INTEGER,
    PRIMARY KEY (version, device_id),
    FOREIGN KEY (version, device_id) REFERENCES canary_evaluations(version, device_id)
);
-- What the candidate predicted on the canary device's held-out examples
-- (issue 23: its health baseline once the candidate is live); optional, a
-- table of its own like canary_parity. JSON lists of numbers.
CREATE TABLE IF NOT EXISTS canary_predictions (
    version INTEGER NOT NULL,
    device_id TEXT NOT NULL,
    histogram TEXT,
    quantiles TEXT,
    PRIMARY KEY (version, device_id),
    FOREIGN KEY (version, device_id) REFERENCES canary_evaluations(version, device_id)
);
CREATE TABLE IF NOT EXISTS canary_decisions (
    version INTEGER PRIMARY KEY REFERENCES releases(version),
    decision TEXT NOT NULL CHECK (decision IN ('promote', 'rollback')),
    device_id TEXT NOT NULL,
    change_id INTEGER NOT NULL REFERENCES release_changes(id),
    decided_at REAL NOT NULL
);
"""


SCHEMA_VERSION = 3

# How long a writer waits for another one before "database is locked".
BUSY_TIMEOUT_S = 30.0

# Version 1 had no 'closing' or 'failed' round states (a CHECK constraint,
# which SQLite cannot alter: the table is copied) and no enrolment requests.
_MIGRATE_FROM_1 = """
ALTER TABLE rounds RENAME TO rounds_v1;
{rounds}
INSERT INTO rounds SELECT * FROM rounds_v1;
DROP TABLE rounds_v1;
ALTER TABLE devices ADD COLUMN enrol_request TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS devices_by_enrol_request ON devices(enrol_request);
"""

# Version 2 had no identity-token subjects.
_MIGRATE_FROM_2 = "ALTER TABLE devices ADD COLUMN subject TEXT;"
# The number of devices, kept by every insert and delete of a device
# (fedge.server.storage.sqlite.devices); counted once here if it is missing.
DEVICE_COUNT_KEY = "device_count"
_COUNT_DEVICES = (
    "BEGIN IMMEDIATE; INSERT OR IGNORE INTO server_state (key, value) "
    f"SELECT '{DEVICE_COUNT_KEY}', COUNT(*) FROM devices; COMMIT;"
)


class Database:
    """Opens connections to one SQLite file; each thread gets its own."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._commit_listeners: list[Callable[[sqlite3.Connection], None]] = []
        self._writer = threading.Lock()  # one transaction of this process at a time
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        self._migrate()

    def _migrate(self) -> None:
        conn = self.connection()
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        has_tables = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'rounds'").fetchone()
        if has_tables and version < 2:
            rounds = SCHEMA[SCHEMA.index("CREATE TABLE IF NOT EXISTS rounds") :]
            rounds = rounds[: rounds.index(";") + 1]
            conn.execute("PRAGMA foreign_keys=OFF")
            conn.executescript(
                "BEGIN IMMEDIATE;" + _MIGRATE_FROM_1.format(rounds=rounds) + "COMMIT;"
            )
            conn.execute("PRAGMA foreign_keys=ON")
        if has_tables and version < 3:
            conn.executescript("BEGIN IMMEDIATE;" + _MIGRATE_FROM_2 + "COMMIT;")
        # executescript manages its own transaction.
        conn.executescript(SCHEMA)
        conn.executescript(HEALTH_SCHEMA)
        conn.executescript(_COUNT_DEVICES)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; rolled back on any exception.

        ``durable=False``: the commit does not wait for the disk
        (``synchronous=NORMAL`` for this transaction), for records whose
        loss in a power cut costs nothing but a repeat, such as a device's
        check-in. It is still atomic, and the next durable commit (WAL:
        one sequential log) puts it on disk too."""
        conn = self.connection()
        # This process's writers queue here, not in SQLite's busy handler,
        # which polls with sleeps of up to 100 ms: a commit waiting for the
        # disk would otherwise stall every check-in behind it for longer.
        if not self._writer.acquire(timeout=BUSY_TIMEOUT_S):
            raise sqlite3.OperationalError("database is locked")
        try:
            if not durable:
                conn.execute("PRAGMA synchronous=NORMAL")
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            finally:
                if not durable:
                    conn.execute("PRAGMA synchronous=FULL")
        finally:
            self._writer.release()
        for listener in self._commit_listeners:
            listener(conn)

    def on_commit(self, listener: Callable[[sqlite3.Connection], None]) -> None:
        """Call ``listener(conn)`` after every commit of :meth:`transaction`,
        in the committing thread (the event feed wakes its subscribers so)."""
        self._commit_listeners.append(listener)

    def close_thread_connection(self) -> None:
        """Close the calling thread's connection, if it opened one. Connections
        of other threads are closed by SQLite when their threads' objects go."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
