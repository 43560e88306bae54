"""How many devices the server knows and has heard from lately.

Aggregate numbers only (no device ids): enrolled devices, those seen (any
request that updates ``last_seen``: enrolment, heartbeat, asking for a
task) in the last hour and the last day, and the enrolled count by the
platform each device named when it enrolled. Platforms are free text from
the devices, so only the most common are listed by name; the rest are
summed under ``other``.
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass

HOUR_S = 3600.0
DAY_S = 24 * HOUR_S
MAX_PLATFORMS = 12
OTHER = "other"
UNNAMED = "unknown"  # a device that named no platform


@dataclass(frozen=True)
class DeviceCounts:
    enrolled: int
    seen_1h: int
    seen_24h: int
    by_platform: dict[str, int]  # enrolled devices per platform, most first

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def device_counts(conn: sqlite3.Connection, now: float) -> DeviceCounts:
    enrolled, seen_1h, seen_24h = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(last_seen >= ?), 0), COALESCE(SUM(last_seen >= ?), 0) "
        "FROM devices",
        (now - HOUR_S, now - DAY_S),
    ).fetchone()
    rows = conn.execute(
        "SELECT platform, COUNT(*) AS n FROM devices GROUP BY platform ORDER BY n DESC, platform"
    ).fetchall()
    by_platform: dict[str, int] = {}
    for index, row in enumerate(rows):
        name = str(row["platform"]) or UNNAMED
        if index >= MAX_PLATFORMS - 1 and len(rows) > MAX_PLATFORMS:
            name = OTHER
        by_platform[name] = by_platform.get(name, 0) + int(row["n"])
    return DeviceCounts(int(enrolled), int(seen_1h), int(seen_24h), by_platform)
