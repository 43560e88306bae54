"""The records of the live model's health, as
:class:`~fedge.server.storage.store.HealthRows` reads and writes them (the
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

from fedge.wire.health import HealthReport


@dataclass(frozen=True)
class StoredHealthReport:
    device_id: str
    window: int
    received_at: float
    report: HealthReport
