"""Round and checkpoint records in SQLite, and checkpoint files on disk.

Plain functions over a connection: the round lifecycle decides, these read
and write. Checkpoint files are content-addressed
(``checkpoints/<sha256>.safetensors``) and written atomically.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedge.server.storage.durable import write_atomically
from fedge.wire.strict_json import finite_or_null
from fedge.wire.update_codec import Checkpoint, content_id, encode_checkpoint


@dataclass(frozen=True)
class Directories:
    """Where the files of a data directory go (the records are in SQLite)."""

    checkpoints: Path  # <sha256>.safetensors, one per checkpoint
    updates: Path  # r<round>/<device>-<digest>.safetensors, as prepared at acceptance
    strategy: Path  # <checkpoint id>.safetensors: the server optimizer's slots

    @classmethod
    def under(cls, data_dir: Path) -> Directories:
        return cls(data_dir / "checkpoints", data_dir / "updates", data_dir / "strategy")

    def all(self) -> tuple[Path, Path, Path]:
        return (self.checkpoints, self.updates, self.strategy)


@dataclass(frozen=True)
class RoundRecord:
    id: int
    state: str
    base_checkpoint: str
    config: dict[str, Any]
    opened_at: float
    deadline_at: float
    closed_at: float | None
    result_checkpoint: str | None
    metrics: dict[str, Any]

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> RoundRecord:
        return cls(
            id=int(row["id"]),
            state=str(row["state"]),
            base_checkpoint=str(row["base_checkpoint"]),
            config=json.loads(row["config"]),
            opened_at=float(row["opened_at"]),
            deadline_at=float(row["deadline_at"]),
            closed_at=None if row["closed_at"] is None else float(row["closed_at"]),
            result_checkpoint=row["result_checkpoint"],
            metrics=json.loads(row["metrics"]),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "round_id": self.id,
            "state": self.state,
            "base_checkpoint": self.base_checkpoint,
            "config": self.config,
            "opened_at": self.opened_at,
            "deadline_at": self.deadline_at,
            "closed_at": self.closed_at,
            "result_checkpoint": self.result_checkpoint,
            "metrics": self.metrics,
        }


def store_checkpoint(conn: sqlite3.Connection, directory: Path, checkpoint: Checkpoint) -> str:
    data = encode_checkpoint(checkpoint)
    checkpoint_id = content_id(data)
    path = directory / f"{checkpoint_id}.safetensors"
    if not path.is_file():
        write_atomically(path, data)
    conn.execute(
        "INSERT OR IGNORE INTO checkpoints (id, round_id, path, bytes, created_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (checkpoint_id, checkpoint.round_id, path.name, len(data), time.time()),
    )
    return checkpoint_id


def get_state(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM server_state WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row["value"])


def set_state(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO server_state (key, value) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def open_round_record(conn: sqlite3.Connection) -> RoundRecord | None:
    row = conn.execute("SELECT * FROM rounds WHERE state = 'open'").fetchone()
    return None if row is None else RoundRecord.from_row(row)


def active_round_record(conn: sqlite3.Connection) -> RoundRecord | None:
    """The round in progress: open, or closing (aggregation under way or retried)."""
    row = conn.execute(
        "SELECT * FROM rounds WHERE state IN ('open', 'closing') ORDER BY id DESC LIMIT 1"
    ).fetchone()
    return None if row is None else RoundRecord.from_row(row)


class StateChanged(Exception):
    """A compare-and-set on a round's state found another state: someone
    else (another process on the same database) changed it first."""


def transition(
    conn: sqlite3.Connection,
    round_id: int,
    expected: str,
    new: str,
    **columns: Any,
) -> None:
    """``UPDATE rounds SET state = new, ... WHERE id = ? AND state = expected``;
    raises :class:`StateChanged` unless exactly that round changed."""
    assignments = "".join(f", {name} = ?" for name in columns)
    cursor = conn.execute(
        f"UPDATE rounds SET state = ?{assignments} WHERE id = ? AND state = ?",
        (new, *columns.values(), round_id, expected),
    )
    if cursor.rowcount != 1:
        raise StateChanged(f"round {round_id} is no longer {expected!r}")


def round_record(conn: sqlite3.Connection, round_id: int) -> RoundRecord | None:
    row = conn.execute("SELECT * FROM rounds WHERE id = ?", (round_id,)).fetchone()
    return None if row is None else RoundRecord.from_row(row)


def count_closed_rounds(conn: sqlite3.Connection) -> int:
    """Rounds that produced a checkpoint (central DP counts its releases by it)."""
    (count,) = conn.execute("SELECT COUNT(*) FROM rounds WHERE state = 'closed'").fetchone()
    return int(count)


def recent_rounds(conn: sqlite3.Connection, limit: int) -> list[RoundRecord]:
    rows = conn.execute("SELECT * FROM rounds ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
    return [RoundRecord.from_row(r) for r in rows]


def insert_round(
    conn: sqlite3.Connection, base: str, config: dict[str, Any], now: float, deadline_s: float
) -> RoundRecord:
    row = conn.execute("SELECT COALESCE(MAX(id), 0) + 1 AS next FROM rounds").fetchone()
    round_id = int(row["next"])
    conn.execute(
        "INSERT INTO rounds (id, state, base_checkpoint, config, opened_at, deadline_at) "
        "VALUES (?, 'open', ?, ?, ?, ?)",
        (round_id, base, json_text(config), now, now + deadline_s),
    )
    record = round_record(conn, round_id)
    assert record is not None  # just inserted in this transaction
    return record


def add_event(conn: sqlite3.Connection, kind: str, payload: dict[str, Any]) -> None:
    conn.execute(
        "INSERT INTO events (kind, payload, created_at) VALUES (?, ?, ?)",
        (kind, json_text(payload), time.time()),
    )


def json_text(value: Any) -> str:
    """Strict JSON for the database and the API: a non-finite float (an
    epsilon of inf, say) becomes null rather than the non-JSON ``Infinity``."""
    return json.dumps(finite_or_null(value), allow_nan=False)
