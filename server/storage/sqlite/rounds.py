"""The round tables in SQLite: rounds, selections, updates, checkpoints,
server state and the events written beside them (the row protocols of
:mod:`fedge.server.storage.store`)."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from fedge.server.storage.rounds import RoundRecord, StateChanged, UpdateRecord, json_text
from fedge.server.storage.sql import SqlConnection as Connection
from fedge.server.storage.store import EventRow

# The states after which a round's update files are read by nothing.
_ENDED = "('closed', 'failed', 'abandoned')"


def _round(row: sqlite3.Row) -> RoundRecord:
    return RoundRecord(
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


def _update(row: sqlite3.Row) -> UpdateRecord:
    return UpdateRecord(
        round_id=int(row["round_id"]),
        device_id=str(row["device_id"]),
        digest=str(row["digest"]),
        num_examples=int(row["num_examples"]),
        norm=float(row["norm"]),
        clipped=bool(row["clipped"]),
        path=str(row["path"]),
        bytes=int(row["bytes"]),
        metrics=json.loads(row["metrics"]),
        received_at=float(row["received_at"]),
        segment=str(row["segment"]),
        segment_offset=int(row["segment_offset"]),
    )


class SQLiteRounds:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def _one(self, sql: str, *args: Any) -> RoundRecord | None:
        row = self._conn.execute(sql, args).fetchone()
        return None if row is None else _round(row)

    def open(self) -> RoundRecord | None:
        return self._one("SELECT * FROM rounds WHERE state = 'open'")

    def active(self) -> RoundRecord | None:
        return self._one(
            "SELECT * FROM rounds WHERE state IN ('open', 'closing') ORDER BY id DESC LIMIT 1"
        )

    def get(self, round_id: int) -> RoundRecord | None:
        return self._one("SELECT * FROM rounds WHERE id = ?", round_id)

    def newest_id(self) -> int | None:
        (newest,) = self._conn.execute("SELECT MAX(id) FROM rounds").fetchone()
        return None if newest is None else int(newest)

    def recent(self, limit: int) -> list[RoundRecord]:
        rows = self._conn.execute(
            "SELECT * FROM rounds ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [_round(r) for r in rows]

    def count_closed(self) -> int:
        (count,) = self._conn.execute(
            "SELECT COUNT(*) FROM rounds WHERE state = 'closed'"
        ).fetchone()
        return int(count)

    def count_closed_through(self, round_id: int) -> int:
        (count,) = self._conn.execute(
            "SELECT COUNT(*) FROM rounds WHERE state = 'closed' AND id <= ?", (round_id,)
        ).fetchone()
        return int(count)

    def insert(
        self, base: str, config: dict[str, Any], now: float, deadline_s: float
    ) -> RoundRecord:
        row = self._conn.execute("SELECT COALESCE(MAX(id), 0) + 1 AS next FROM rounds").fetchone()
        round_id = int(row["next"])
        self._conn.execute(
            "INSERT INTO rounds (id, state, base_checkpoint, config, opened_at, deadline_at) "
            "VALUES (?, 'open', ?, ?, ?, ?)",
            (round_id, base, json_text(config), now, now + deadline_s),
        )
        record = self.get(round_id)
        assert record is not None  # just inserted in this transaction
        return record

    def transition(self, round_id: int, expected: str, new: str, **columns: Any) -> None:
        # The WHERE on the state is the compare-and-set: another process on
        # the same file may have moved the round on since it was read.
        assignments = "".join(f", {name} = ?" for name in columns)
        cursor = self._conn.execute(
            f"UPDATE rounds SET state = ?{assignments} WHERE id = ? AND state = ?",
            (new, *columns.values(), round_id, expected),
        )
        if cursor.rowcount != 1:
            raise StateChanged(f"round {round_id} is no longer {expected!r}")


class SQLiteSelections:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def contains(self, round_id: int, device_id: str) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM selections WHERE round_id = ? AND device_id = ?", (round_id, device_id)
        ).fetchone()
        return row is not None

    def add(self, round_id: int, device_id: str, now: float) -> None:
        self._conn.execute(
            "INSERT INTO selections (round_id, device_id, selected_at) VALUES (?, ?, ?)",
            (round_id, device_id, now),
        )

    def renew(self, round_id: int, device_id: str, now: float) -> None:
        self._conn.execute(
            "UPDATE selections SET selected_at = ? WHERE round_id = ? AND device_id = ?",
            (now, round_id, device_id),
        )

    def count(self, round_id: int) -> int:
        (taken,) = self._conn.execute(
            "SELECT COUNT(*) FROM selections WHERE round_id = ?", (round_id,)
        ).fetchone()
        return int(taken)

    def since(self, first_round: int, selected_after: float) -> list[tuple[int, str, float]]:
        rows = self._conn.execute(
            "SELECT round_id, device_id, selected_at FROM selections "
            "WHERE round_id >= ? AND selected_at > ? ORDER BY selected_at, round_id",
            (first_round, selected_after),
        ).fetchall()
        return [(int(r[0]), str(r[1]), float(r[2])) for r in rows]


class SQLiteUpdates:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def get(self, round_id: int, device_id: str) -> UpdateRecord | None:
        row = self._conn.execute(
            "SELECT * FROM updates WHERE round_id = ? AND device_id = ?", (round_id, device_id)
        ).fetchone()
        return None if row is None else _update(row)

    def has_digest(self, round_id: int, digest: str) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM updates WHERE round_id = ? AND digest = ?", (round_id, digest)
        ).fetchone()
        return row is not None

    def insert(self, update: UpdateRecord) -> UpdateRecord:
        self._conn.execute(
            "INSERT INTO updates (round_id, device_id, digest, num_examples, norm, "
            "clipped, path, bytes, metrics, received_at, segment, segment_offset) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                update.round_id,
                update.device_id,
                update.digest,
                update.num_examples,
                update.norm,
                update.clipped,
                update.path,
                update.bytes,
                # Not json_text: the device's metrics are stored as sent.
                json.dumps(update.metrics),
                update.received_at,
                update.segment,
                update.segment_offset,
            ),
        )
        stored = self.get(update.round_id, update.device_id)
        assert stored is not None  # just inserted in this transaction
        return stored

    def of_round(self, round_id: int, by_arrival: bool = False) -> list[UpdateRecord]:
        # Without by_arrival: by digest, the order in which SQLite's plan (the
        # updates_by_digest index) has always handed them to the aggregation,
        # whose floating-point sums depend on it.
        order = "received_at" if by_arrival else "digest"
        rows = self._conn.execute(
            f"SELECT * FROM updates WHERE round_id = ? ORDER BY {order}", (round_id,)
        ).fetchall()
        return [_update(r) for r in rows]

    def count(self, round_id: int) -> int:
        (count,) = self._conn.execute(
            "SELECT COUNT(*) FROM updates WHERE round_id = ?", (round_id,)
        ).fetchone()
        return int(count)

    def forget_files_through(self, round_id: int) -> list[str]:
        rows = self._conn.execute(
            "SELECT u.path, u.segment FROM updates u JOIN rounds r "
            "ON r.id = u.round_id WHERE u.round_id <= ? AND u.path != '' "
            f"AND r.state IN {_ENDED}",
            (round_id,),
        ).fetchall()
        self._conn.execute(
            "UPDATE updates SET path = '' WHERE round_id <= ? AND round_id IN "
            f"(SELECT id FROM rounds WHERE state IN {_ENDED})",
            (round_id,),
        )
        files = [str(r["path"]) for r in rows if not r["segment"]]
        # A segment goes once no stored update points into it any more.
        segments = sorted({str(r["segment"]) for r in rows if r["segment"]})
        return files + [s for s in segments if not self._segment_in_use(s)]

    def _segment_in_use(self, segment: str) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM updates WHERE segment = ? AND path != '' LIMIT 1", (segment,)
        ).fetchone()
        return row is not None

    def live_segments(self) -> set[str]:
        rows = self._conn.execute(
            "SELECT DISTINCT segment FROM updates WHERE segment != '' AND path != ''"
        ).fetchall()
        return {str(r["segment"]) for r in rows}


class SQLiteCheckpoints:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add(self, checkpoint_id: str, round_id: int, file_name: str, size: int) -> None:
        self._conn.execute(
            "INSERT OR IGNORE INTO checkpoints (id, round_id, path, bytes, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (checkpoint_id, round_id, file_name, size, time.time()),
        )

    def file_name(self, checkpoint_id: str) -> str | None:
        row = self._conn.execute(
            "SELECT path FROM checkpoints WHERE id = ?", (checkpoint_id,)
        ).fetchone()
        return None if row is None else str(row["path"])

    def made_by(self, checkpoint_id: str) -> tuple[int, str] | None:
        row = self._conn.execute(
            "SELECT round_id, path FROM checkpoints WHERE id = ?", (checkpoint_id,)
        ).fetchone()
        return None if row is None else (int(row["round_id"]), str(row["path"]))


class SQLiteServerState:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def get(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM server_state WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row["value"])

    def set(self, key: str, value: str) -> None:
        self._conn.execute(
            "INSERT INTO server_state (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )


class SQLiteEvents:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add(self, kind: str, payload: dict[str, Any]) -> None:
        self._conn.execute(
            "INSERT INTO events (kind, payload, created_at) VALUES (?, ?, ?)",
            (kind, json_text(payload), time.time()),
        )

    def after(self, after_id: int, limit: int) -> list[EventRow]:
        rows = self._conn.execute(
            "SELECT id, kind, payload, created_at FROM events WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        ).fetchall()
        return [
            EventRow(int(r["id"]), str(r["kind"]), r["payload"], float(r["created_at"]))
            for r in rows
        ]

    def latest_id(self) -> int:
        (latest,) = self._conn.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()
        return int(latest)

    def last_assigned_id(self) -> int:
        # AUTOINCREMENT's counter: one row, not a scan of the table.
        row = self._conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        return 0 if row is None else int(row[0])
