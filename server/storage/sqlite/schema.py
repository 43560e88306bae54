"""The schema as release 3 wrote it, in the SQL that SQLite and PostgreSQL
both speak (PostgreSQL's store maps the column types:
:func:`fedge.server.storage.postgres.dialect.ddl`); :mod:`.migrations`
applies it as step 3, the baseline, and every later change as a step of its
own."""

from __future__ import annotations

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
CREATE TABLE IF NOT EXISTS canary_decisions (
    version INTEGER PRIMARY KEY REFERENCES releases(version),
    decision TEXT NOT NULL CHECK (decision IN ('promote', 'rollback')),
    device_id TEXT NOT NULL,
    change_id INTEGER NOT NULL REFERENCES release_changes(id),
    decided_at REAL NOT NULL
);
"""

# The number of devices, kept by every insert and delete of a device
# (fedge.server.storage.sqlite.devices); counted at every open if it is
# missing (not a step: a repair).
# Step 5 (fedge.server.storage.sqlite.migrations): optional, a table of its
# own like canary_parity. JSON lists of numbers.
CANARY_PREDICTIONS = """
CREATE TABLE IF NOT EXISTS canary_predictions (
    version INTEGER NOT NULL,
    device_id TEXT NOT NULL,
    histogram TEXT,
    quantiles TEXT,
    PRIMARY KEY (version, device_id),
    FOREIGN KEY (version, device_id) REFERENCES canary_evaluations(version, device_id)
);
"""

DEVICE_COUNT_KEY = "device_count"
COUNT_DEVICES = (
    "INSERT OR IGNORE INTO server_state (key, value) "
    f"SELECT '{DEVICE_COUNT_KEY}', CAST(COUNT(*) AS TEXT) FROM devices;"
)

BASELINE_SCRIPT = SCHEMA + HEALTH_SCHEMA

# Step 6: where an update's bytes are once they are appended to a segment
# (fedge.server.storage.segments); '' and 0 for a file of its own. BIGINT
# (SQLite: an INTEGER) so that PostgreSQL's offsets are 64-bit as well.
UPDATE_SEGMENTS = """
ALTER TABLE updates ADD COLUMN segment TEXT NOT NULL DEFAULT '';
ALTER TABLE updates ADD COLUMN segment_offset BIGINT NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS updates_by_segment ON updates(segment);
"""
