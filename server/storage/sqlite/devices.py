"""The devices table in SQLite (:class:`~fedge.server.storage.store.DeviceRows`)."""

from __future__ import annotations

from collections.abc import Iterable

from fedge.server.storage.devices import (
    ActiveDevices,
    Conditions,
    Device,
    Enrolment,
    SeatStanding,
    hash_token,
    new_device_credentials,
)
from fedge.server.storage.sql import SqlConnection as Connection
from fedge.server.storage.sqlite.schema import DEVICE_COUNT_KEY

# A device in one of these keeps its rows: it is part of a round in progress.
_ACTIVE_ROUNDS = "(SELECT id FROM rounds WHERE state IN ('open', 'closing'))"
# Devices that have been away long enough and hold nothing in progress: no
# seat or update in an active round, no update file not yet cleared, no
# report on the release in canary.
_EXPIRED = f"""
SELECT id FROM devices d WHERE last_seen < ?
AND NOT EXISTS (SELECT 1 FROM selections s WHERE s.device_id = d.id
                AND s.round_id IN {_ACTIVE_ROUNDS})
AND NOT EXISTS (SELECT 1 FROM updates u WHERE u.device_id = d.id
                AND (u.path != '' OR u.round_id IN {_ACTIVE_ROUNDS}))
AND NOT EXISTS (SELECT 1 FROM canary_evaluations c JOIN releases r ON r.version = c.version
                WHERE c.device_id = d.id AND r.state = 'canary')
LIMIT ?
"""


class SQLiteDevices:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def enrol(
        self, platform: str, request_id: str | None, now: float, subject: str | None = None
    ) -> Enrolment:
        # A request id seen before is a retry whose answer was lost, and a
        # subject seen before is the same user: the same device, with its
        # token replaced (only the hash of each is kept).
        request_hash = None if request_id is None else hash_token(request_id)
        subject_hash = None if subject is None else hash_token(subject)
        device_id, token = new_device_credentials()
        if subject_hash is not None:
            request_hash = None  # the subject identifies the device
            known = self._conn.execute(
                "SELECT id FROM devices WHERE subject = ?", (subject_hash,)
            ).fetchone()
        elif request_hash is not None:
            known = self._conn.execute(
                "SELECT id FROM devices WHERE enrol_request = ?", (request_hash,)
            ).fetchone()
        else:
            known = None
        if known is not None:
            self._conn.execute(
                "UPDATE devices SET token_hash = ?, last_seen = ? WHERE id = ?",
                (hash_token(token), now, known["id"]),
            )
            return Enrolment(str(known["id"]), token, created=False)
        self._conn.execute(
            "INSERT INTO devices (id, token_hash, platform, created_at, last_seen, "
            "enrol_request, subject) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (device_id, hash_token(token), platform, now, now, request_hash, subject_hash),
        )
        self._add_to_count(1)
        return Enrolment(device_id, token, created=True)

    def count(self) -> int:
        # Kept by every insert and delete (counted once when the file opens),
        # so enrolment does not count every device.
        row = self._conn.execute(
            "SELECT value FROM server_state WHERE key = ?", (DEVICE_COUNT_KEY,)
        ).fetchone()
        return int(row["value"])

    def expire(self, unseen_since: float, batch: int) -> int:
        ids = [
            (str(r["id"]),) for r in self._conn.execute(_EXPIRED, (unseen_since, batch)).fetchall()
        ]
        for table in (
            "selections",
            "updates",
            "canary_parity",
            "canary_predictions",
            "canary_evaluations",
            "health_reports",
            "devices",
        ):
            column = "id" if table == "devices" else "device_id"
            self._conn.executemany(f"DELETE FROM {table} WHERE {column} = ?", ids)
        self._add_to_count(-len(ids))
        return len(ids)

    def _add_to_count(self, delta: int) -> None:
        if delta:
            self._conn.execute(
                "UPDATE server_state SET value = CAST(CAST(value AS INTEGER) + ? AS TEXT) "
                "WHERE key = ?",
                (delta, DEVICE_COUNT_KEY),
            )

    def by_token_hash(self, token_hash: str) -> Device | None:
        row = self._conn.execute(
            "SELECT id, platform, idle, charging, unmetered, participations FROM devices "
            "WHERE token_hash = ?",
            (token_hash,),
        ).fetchone()
        if row is None:
            return None
        return Device(
            row["id"],
            row["platform"],
            bool(row["idle"]),
            bool(row["charging"]),
            bool(row["unmetered"]),
            int(row["participations"]),
        )

    def seen_since(self, *moments: float) -> tuple[int, ...]:
        # One scan of the table for every count.
        columns = "".join(
            ", COALESCE(SUM(CASE WHEN last_seen >= ? THEN 1 ELSE 0 END), 0)" for _ in moments
        )
        row = self._conn.execute(f"SELECT COUNT(*){columns} FROM devices", moments).fetchone()
        return tuple(int(n) for n in row[1:])

    def platforms(self) -> list[tuple[str, int]]:
        rows = self._conn.execute(
            "SELECT platform, COUNT(*) AS n FROM devices "
            "GROUP BY platform ORDER BY n DESC, platform"
        ).fetchall()
        return [(str(r["platform"]), int(r["n"])) for r in rows]

    def ids_except(self, platform: str) -> list[str]:
        rows = self._conn.execute("SELECT id FROM devices WHERE platform != ?", (platform,))
        return [str(r["id"]) for r in rows]

    def record_heartbeat(self, device_id: str, conditions: Conditions, now: float) -> None:
        self._conn.execute(
            "UPDATE devices SET last_seen = ?, idle = ?, charging = ?, unmetered = ? WHERE id = ?",
            (now, conditions.idle, conditions.charging, conditions.unmetered, device_id),
        )

    def record_check_in(self, device_id: str, conditions: Conditions, now: float) -> None:
        self._conn.execute(
            "UPDATE devices SET last_seen = ?, last_asked = ?, idle = ?, charging = ?, "
            "unmetered = ? WHERE id = ?",
            (now, now, conditions.idle, conditions.charging, conditions.unmetered, device_id),
        )

    def least_participations(self, asked_since: float) -> int:
        (least,) = self._conn.execute(
            "SELECT COALESCE(MIN(participations), 0) FROM devices WHERE last_asked >= ?",
            (asked_since,),
        ).fetchone()
        return int(least)

    def seat_standing(
        self, device_id: str, asked_since: float, enrolled_before: float
    ) -> SeatStanding:
        (enrolled_at,) = self._conn.execute(
            "SELECT created_at FROM devices WHERE id = ?", (device_id,)
        ).fetchone() or (0.0,)
        (settled,) = self._conn.execute(
            "SELECT COUNT(*) FROM devices WHERE last_asked >= ? AND created_at < ?",
            (asked_since, enrolled_before),
        ).fetchone()
        # The lower quartile of the settled active devices' participations
        # (of all active devices while none is settled).
        where = "last_asked >= ? AND created_at < ?"
        args: tuple[float, ...] = (asked_since, enrolled_before)
        count = int(settled)
        if count == 0:
            where, args = "last_asked >= ?", (asked_since,)
            (count,) = self._conn.execute(
                f"SELECT COUNT(*) FROM devices WHERE {where}", args
            ).fetchone()
        row = self._conn.execute(
            f"SELECT participations FROM devices WHERE {where} "
            "ORDER BY participations LIMIT 1 OFFSET ?",
            (*args, max(int(count) - 1, 0) // 4),
        ).fetchone()
        return SeatStanding(
            enrolled_at=float(enrolled_at),
            settled_active=int(settled),
            lower_quartile=0 if row is None else int(row[0]),
        )

    def active(self, asked_since: float) -> ActiveDevices:
        count, least = self._conn.execute(
            "SELECT COUNT(*), COALESCE(MIN(participations), 0) FROM devices WHERE last_asked >= ?",
            (asked_since,),
        ).fetchone()
        (least_served,) = self._conn.execute(
            "SELECT COUNT(*) FROM devices WHERE last_asked >= ? AND participations <= ?",
            (asked_since, least),
        ).fetchone()
        return ActiveDevices(int(count), int(least), int(least_served))

    def count_participations(self, device_ids: Iterable[str]) -> None:
        self._conn.executemany(
            "UPDATE devices SET participations = participations + 1 WHERE id = ?",
            [(device_id,) for device_id in device_ids],
        )
