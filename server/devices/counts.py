"""How many devices the server knows and has heard from lately.

Aggregate numbers only (no device ids): enrolled devices, those seen (any
request that updates ``last_seen``: enrolment, heartbeat, asking for a
task) in the last hour and the last day, and the enrolled count by the
platform each device named when it enrolled. Platforms are free text from
the devices, so only the most common are listed by name; the rest are
summed under ``other``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from fedge.server.storage.store import DeviceRows

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


def device_counts(devices: DeviceRows, now: float) -> DeviceCounts:
    seen_1h, seen_24h = devices.seen_since(now - HOUR_S, now - DAY_S)
    rows = devices.platforms()
    by_platform: dict[str, int] = {}
    for index, (platform, count) in enumerate(rows):
        name = platform or UNNAMED
        if index >= MAX_PLATFORMS - 1 and len(rows) > MAX_PLATFORMS:
            name = OTHER
        by_platform[name] = by_platform.get(name, 0) + count
    return DeviceCounts(devices.count(), seen_1h, seen_24h, by_platform)
