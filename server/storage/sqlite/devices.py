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
from fedge.server.storage.sqlite.errors import Connection


class SQLiteDevices:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def enrol(self, platform: str, request_id: str | None, now: float) -> Enrolment:
        # A request id seen before is a retry whose answer was lost: the same
        # device, with its token replaced (only the hash of either is kept).
        request_hash = None if request_id is None else hash_token(request_id)
        device_id, token = new_device_credentials()
        known = (
            None
            if request_hash is None
            else self._conn.execute(
                "SELECT id FROM devices WHERE enrol_request = ?", (request_hash,)
            ).fetchone()
        )
        if known is not None:
            self._conn.execute(
                "UPDATE devices SET token_hash = ?, last_seen = ? WHERE id = ?",
                (hash_token(token), now, known["id"]),
            )
            return Enrolment(str(known["id"]), token, created=False)
        self._conn.execute(
            "INSERT INTO devices (id, token_hash, platform, created_at, last_seen, "
            "enrol_request) VALUES (?, ?, ?, ?, ?, ?)",
            (device_id, hash_token(token), platform, now, now, request_hash),
        )
        return Enrolment(device_id, token, created=True)

    def count(self) -> int:
        (count,) = self._conn.execute("SELECT COUNT(*) FROM devices").fetchone()
        return int(count)

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
        columns = "".join(", COALESCE(SUM(last_seen >= ?), 0)" for _ in moments)
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
