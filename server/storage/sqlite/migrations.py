"""Numbered schema steps, the same for both stores, each recorded in the
``schema_version`` table in the transaction that applies it.

Step 3 is the baseline: the whole schema as release 3 wrote it
(:mod:`.schema`), which an empty database gets in one step. Its statements
are ``CREATE ... IF NOT EXISTS``, so a database at version 3 runs it again
when opened and gains what release 3 added without a new number (the
health and parity tables). SQLite files older than the baseline are
brought up to it by :mod:`.database` first; PostgreSQL never had them.
A change to the schema is a new step at the end, never an edit of one
that has shipped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from fedge.server.storage.sqlite.schema import (
    BASELINE_SCRIPT,
    CANARY_PREDICTIONS,
    UPDATE_SEGMENTS,
)
from fedge.server.storage.store import StoreError

BASELINE = 3

VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Step:
    version: int
    name: str
    script: str  # statements in the SQL both stores speak


STEPS = (
    Step(BASELINE, "baseline: the schema of release 3", BASELINE_SCRIPT),
    # The aggregation reads a round's updates in the order they arrived
    # (UpdateRows.of_round(by_arrival=True)) without sorting the round.
    Step(
        4,
        "updates of a round by arrival",
        "CREATE INDEX IF NOT EXISTS updates_by_arrival ON updates(round_id, received_at);",
    ),
    # What the candidate predicted on a canary device's held-out examples: its
    # health baseline once the candidate is live (fedge.server.releases.health).
    Step(5, "canary predictions", CANARY_PREDICTIONS),
    # Updates appended to segment files, one per group commit
    # (fedge.server.storage.segments); rows of older data keep their own file.
    Step(6, "update segments", UPDATE_SEGMENTS),
)
LATEST = STEPS[-1].version


def pending(current: int) -> tuple[Step, ...]:
    """The steps a database at version ``current`` (0: empty) runs, in order:
    those after it, and the baseline again while it is at the baseline."""
    return tuple(s for s in STEPS if s.version > current or (s.version == BASELINE == current))


def recorded(step: Step) -> str:
    """The statement that records ``step`` as applied (once)."""
    name = step.name.replace("'", "''")
    return (
        "INSERT INTO schema_version (version, name, applied_at) "
        f"VALUES ({step.version}, '{name}', {time.time()!r}) ON CONFLICT (version) DO NOTHING;"
    )


def refuse_newer(current: int, location: str) -> None:
    """A database a newer fedge has upgraded is not opened by this one."""
    if current > LATEST:
        raise StoreError(
            f"the database at {location} has schema version {current}, newer than this "
            f"fedge's {LATEST}: run a newer fedge"
        )
