"""Device records: enrolment, heartbeats and check-ins, participations.

Plain functions over a connection, like :mod:`fedge.server.storage.rounds`:
the coordinator decides, these read and write. A device's conditions are
what it last reported; the fair sampler (:mod:`fedge.server.rounds.admission`)
reads ``participations`` (rounds it helped close) and ``last_asked`` (when
it last asked for work).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from fedge.server.devices.auth import hash_token, new_device_credentials


@dataclass(frozen=True)
class Conditions:
    """What a device reports about itself when it checks in."""

    idle: bool = False
    charging: bool = False
    unmetered: bool = False


@dataclass(frozen=True)
class Enrolment:
    device_id: str
    token: str  # shown once; only its hash is stored
    created: bool  # False: a retry of an earlier enrolment with the same request id


def enrol(conn: sqlite3.Connection, platform: str, request_id: str | None, now: float) -> Enrolment:
    """A new device, or, for a ``request_id`` seen before, the same device
    with a fresh token (the first answer was lost; its token is replaced)."""
    request_hash = None if request_id is None else hash_token(request_id)
    device_id, token = new_device_credentials()
    known = (
        None
        if request_hash is None
        else conn.execute(
            "SELECT id FROM devices WHERE enrol_request = ?", (request_hash,)
        ).fetchone()
    )
    if known is not None:
        conn.execute(
            "UPDATE devices SET token_hash = ?, last_seen = ? WHERE id = ?",
            (hash_token(token), now, known["id"]),
        )
        return Enrolment(str(known["id"]), token, created=False)
    conn.execute(
        "INSERT INTO devices (id, token_hash, platform, created_at, last_seen, "
        "enrol_request) VALUES (?, ?, ?, ?, ?, ?)",
        (device_id, hash_token(token), platform, now, now, request_hash),
    )
    return Enrolment(device_id, token, created=True)


def count_devices(conn: sqlite3.Connection) -> int:
    (count,) = conn.execute("SELECT COUNT(*) FROM devices").fetchone()
    return int(count)


def record_heartbeat(
    conn: sqlite3.Connection, device_id: str, conditions: Conditions, now: float
) -> None:
    conn.execute(
        "UPDATE devices SET last_seen = ?, idle = ?, charging = ?, unmetered = ? WHERE id = ?",
        (now, conditions.idle, conditions.charging, conditions.unmetered, device_id),
    )


def record_check_in(
    conn: sqlite3.Connection, device_id: str, conditions: Conditions, now: float
) -> None:
    """A heartbeat that also asks for work: the device counts as active."""
    conn.execute(
        "UPDATE devices SET last_seen = ?, last_asked = ?, idle = ?, charging = ?, "
        "unmetered = ? WHERE id = ?",
        (now, now, conditions.idle, conditions.charging, conditions.unmetered, device_id),
    )


def least_participations(conn: sqlite3.Connection, asked_since: float) -> int:
    """The fewest rounds any device that asked for work since then took part in."""
    (least,) = conn.execute(
        "SELECT COALESCE(MIN(participations), 0) FROM devices WHERE last_asked >= ?",
        (asked_since,),
    ).fetchone()
    return int(least)


@dataclass(frozen=True)
class ActiveDevices:
    """The devices that asked for work lately, as pace steering sees them."""

    count: int
    least_participations: int  # the least-served one's rounds
    least_served: int  # how many have taken part in no more rounds than that


def active_devices(conn: sqlite3.Connection, asked_since: float) -> ActiveDevices:
    count, least = conn.execute(
        "SELECT COUNT(*), COALESCE(MIN(participations), 0) FROM devices WHERE last_asked >= ?",
        (asked_since,),
    ).fetchone()
    (least_served,) = conn.execute(
        "SELECT COUNT(*) FROM devices WHERE last_asked >= ? AND participations <= ?",
        (asked_since, least),
    ).fetchone()
    return ActiveDevices(int(count), int(least), int(least_served))


def count_participations(conn: sqlite3.Connection, device_ids: Iterable[str]) -> None:
    """Each of these devices took part in one more closed round."""
    conn.executemany(
        "UPDATE devices SET participations = participations + 1 WHERE id = ?",
        [(device_id,) for device_id in device_ids],
    )
