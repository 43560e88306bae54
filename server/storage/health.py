"""The records of the live model's health, as
:class:`HealthRows` (below) reads and writes them (the
SQL is in :mod:`fedge.server.storage.sqlite.health`).

A report holds a device's numbers only (loss, metric, how many labelled
examples, the runtime, a histogram of predicted classes or a regressor's
quantiles), one per device, release and window. A judged window
(:class:`~fedge.wire.health.HealthWindow`) is what the reports of one
window and runtime added up to; it is written once, when the window has
closed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from fedge.wire.health import HealthReport, HealthWindow


@dataclass(frozen=True)
class StoredHealthReport:
    device_id: str
    window: int
    received_at: float
    report: HealthReport


class HealthRows(Protocol):
    """The live model's health: device reports (one per device, release and
    window) and the judged windows (one per release, runtime and window)."""

    def find(self, version: int, device_id: str, window: int) -> StoredHealthReport | None: ...

    def insert(
        self, version: int, device_id: str, window: int, report: HealthReport, at: float
    ) -> StoredHealthReport: ...

    def in_window(self, version: int, window: int) -> list[StoredHealthReport]: ...

    def count_in_window(self, version: int, window: int) -> int: ...

    def unjudged_windows(self, version: int, before: int) -> list[int]:
        """Windows before ``before`` with reports on ``version`` but no judgement yet."""

    def record_window(self, judged: HealthWindow) -> None: ...

    def baseline(self, version: int, runtime: str) -> HealthWindow | None: ...

    def latest(self, version: int, runtime: str) -> HealthWindow | None: ...

    def windows(self, version: int, limit: int) -> list[HealthWindow]:
        """The newest ``limit`` judged windows, oldest first."""
