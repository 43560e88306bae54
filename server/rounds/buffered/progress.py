"""What the dashboard shows of asynchronous aggregation (``GET /v1/stats``,
``aggregation``): how fast versions are made, how full the open version's
buffer is, how many devices train now, and how stale the recent accepted
updates were.

Read from the store (versions, their buffers' staleness histograms) and
from the coordinator's memory (the live leases, the open buffer's
staleness), so it is right after a restart too: both are rebuilt at start.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fedge.server.rounds.buffered.leases import Leases
from fedge.server.storage.store import Store

# Versions per minute: over the versions closed in this many seconds (or,
# when more than RATE_VERSIONS closed in it, over the time those took).
RATE_WINDOW_S = 600.0
RATE_VERSIONS = 120
# The staleness histogram: the open buffer and this many versions before it.
HISTOGRAM_VERSIONS = 20


@dataclass(frozen=True)
class AsyncProgress:
    version: int  # the version whose buffer is filling (0: none open yet)
    versions_per_minute: float
    buffer_filled: int
    buffer_size: int
    concurrency_in_use: int
    concurrency_limit: int
    staleness_histogram: dict[str, int]  # versions behind -> accepted updates
    refused_stale: int  # too_stale refusals in the rejection tally (recent versions, in memory)
    refused_stale_since: float  # when that tally started: this server process's start

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": "async",
            "version": self.version,
            "versions_per_minute": round(self.versions_per_minute, 3),
            "buffer": {"filled": self.buffer_filled, "size": self.buffer_size},
            "concurrency": {"in_use": self.concurrency_in_use, "limit": self.concurrency_limit},
            "staleness_histogram": dict(
                sorted(self.staleness_histogram.items(), key=lambda kv: int(kv[0]))
            ),
            "refused_stale": self.refused_stale,
            "refused_stale_since": round(self.refused_stale_since, 3),
        }


def async_progress(
    store: Store,
    leases: Leases,
    buffer_size: int,
    open_buffer: Mapping[str, tuple[int, float]],
    refused_stale: int,
    refused_stale_since: float,
    now: float,
) -> AsyncProgress:
    """``open_buffer``: each device's (staleness, factor) in the open buffer."""
    with store.reading() as tx:
        active = tx.rounds.active()
        recent = tx.rounds.recent(max(RATE_VERSIONS, HISTOGRAM_VERSIONS + 1))
        filled = 0 if active is None else tx.updates.count(active.id)
    histogram = _histogram(
        open_buffer,
        [
            r.metrics
            for r in recent[: HISTOGRAM_VERSIONS + 1]
            if active is None or r.id != active.id
        ],
    )
    closed = [r.closed_at for r in recent if r.state == "closed" and r.closed_at is not None]
    return AsyncProgress(
        version=0 if active is None else active.id,
        versions_per_minute=_per_minute(closed, len(recent) == RATE_VERSIONS, now),
        buffer_filled=filled,
        buffer_size=buffer_size,
        concurrency_in_use=leases.count(now, None if active is None else active.id),
        concurrency_limit=leases.concurrency,
        staleness_histogram=histogram,
        refused_stale=refused_stale,
        refused_stale_since=refused_stale_since,
    )


def _per_minute(closed_at: list[float], truncated: bool, now: float) -> float:
    """Versions closed in the last RATE_WINDOW_S per minute; when the list
    read was cut at RATE_VERSIONS inside the window, over the span it covers."""
    in_window = [t for t in closed_at if now - t <= RATE_WINDOW_S]
    if not in_window:
        return 0.0
    span = RATE_WINDOW_S
    if truncated and len(in_window) == len(closed_at):
        span = max(now - min(in_window), 1.0)
    return len(in_window) / (span / 60.0)


def _histogram(
    open_buffer: Mapping[str, tuple[int, float]], closed: list[Mapping[str, Any]]
) -> dict[str, int]:
    """The open buffer's staleness and the closed versions' histograms, summed."""
    histogram: dict[str, int] = {}
    for staleness, _ in open_buffer.values():
        histogram[str(staleness)] = histogram.get(str(staleness), 0) + 1
    for metrics in closed:
        for key, count in dict(metrics.get("staleness_histogram") or {}).items():
            histogram[str(key)] = histogram.get(str(key), 0) + int(count)
    return histogram
