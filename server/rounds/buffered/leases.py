"""Who is training now, in asynchronous aggregation: one lease per device.

A lease is the task a device holds: the version (round) it trains on and
when its time is up. At most ``concurrency`` leases are live at once; the
count is what pace steering refuses on, so it lives in memory and is exact
while the server runs. What makes an upload acceptable is durable (the
selection row of its round, written, or renewed, with the lease); at start
the leases still running are rebuilt from those rows
(:func:`fedge.server.rounds.buffered.lease_rebuild.rebuild_leases`), so a
restart neither resets the count nor takes a device's task away. An upload
on a lease not known here (one that ended before the restart) is held to
the bound :meth:`Leases.expired_by` can tell from the round alone.

Memory stays bounded: live leases are at most ``concurrency``, and the
ended ones remembered (so that a device cannot upload on a lease that
expired, or that a newer one replaced) at most ``REMEMBERED``.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

REMEMBERED = 100_000
# Measured task durations whose median is the fleet's (slow_factor).
RECENT_TASKS = 500


@dataclass(frozen=True)
class Lease:
    round_id: int
    granted_at: float
    expires_at: float


class Leases:
    def __init__(
        self,
        concurrency: int,
        lease_s: float,
        max_staleness: int | None = None,
        slow_factor: float = 0.0,
    ) -> None:
        self.concurrency = concurrency
        self.lease_s = lease_s
        # Fast devices first (0: off): a device whose last measured task took
        # over slow_factor x the recent median gets a seat only while at most
        # half are taken. Measured here, lease granted to update accepted:
        # in memory, so a restart forgets it (every device counts as fast).
        self.slow_factor = slow_factor
        self._took: OrderedDict[str, float] = OrderedDict()  # device -> seconds
        self._recent: deque[float] = deque(maxlen=RECENT_TASKS)
        # A lease on a version more than this behind the current one can no
        # longer bring an acceptable update (too_stale): it holds no slot.
        self.max_staleness = max_staleness
        self.lock = threading.Lock()
        self._live: dict[str, Lease] = {}
        # device -> the round of its last lease that ended without an upload.
        self._ended: OrderedDict[str, int] = OrderedDict()

    def live(self, device_id: str, now: float) -> Lease | None:
        with self.lock:
            self._expire(now)
            return self._live.get(device_id)

    def count(self, now: float, current: int | None = None) -> int:
        """Live leases (``current``: the open version, past which stale ones end)."""
        with self.lock:
            self._expire(now, current)
            return len(self._live)

    def grant(self, device_id: str, round_id: int, now: float) -> Lease | None:
        """A new lease on the current version ``round_id``, or None when
        ``concurrency`` leases are live."""
        with self.lock:
            self._expire(now, round_id)
            if device_id not in self._live:
                seats = self.concurrency
                if self._measured_slow(device_id):
                    seats = self.concurrency // 2
                if len(self._live) >= seats:
                    return None
            lease = Lease(round_id, now, now + self.lease_s)
            self._live[device_id] = lease
            self._ended.pop(device_id, None)
            return lease

    def restore(self, device_id: str, round_id: int, granted_at: float) -> None:
        """A lease granted before a restart (:mod:`.lease_rebuild`): counted
        again, even past ``concurrency`` (a smaller limit after the restart
        only slows new grants)."""
        with self.lock:
            self._live[device_id] = Lease(round_id, granted_at, granted_at + self.lease_s)
            self._ended.pop(device_id, None)

    def drop(self, device_id: str) -> None:
        """The device's lease ended without an upload (its version went too stale)."""
        with self.lock:
            lease = self._live.pop(device_id, None)
            if lease is not None:
                self._remember(device_id, lease.round_id)

    def release(self, device_id: str, round_id: int, now: float | None = None) -> None:
        """The device's update on ``round_id`` was accepted at ``now``: its
        slot is free, and how long its task took is measured."""
        now = time.time() if now is None else now
        with self.lock:
            lease = self._live.get(device_id)
            if lease is not None and lease.round_id == round_id:
                del self._live[device_id]
                if self.slow_factor:
                    took = max(now - lease.granted_at, 0.0)
                    self._took[device_id] = took
                    self._took.move_to_end(device_id)
                    while len(self._took) > REMEMBERED:
                        self._took.popitem(last=False)
                    self._recent.append(took)

    def _measured_slow(self, device_id: str) -> bool:
        took = self._took.get(device_id)
        if not self.slow_factor or took is None:
            return False
        return took > self.slow_factor * statistics.median(self._recent)

    def refusal(self, device_id: str, round_id: int, now: float) -> str | None:
        """Why an upload of ``device_id`` on ``round_id`` comes after its
        lease (a code), or None when it may be on time. Not known here (a
        restart): None, and the caller applies :meth:`expired_by`."""
        with self.lock:
            lease = self._live.get(device_id)
            if lease is not None:
                if lease.round_id != round_id:
                    return "lease_replaced"
                return "lease_expired" if now > lease.expires_at else None
            if self._ended.get(device_id) == round_id:
                return "lease_expired"
            return None

    def expired_by(self, round_closed_at: float | None, now: float) -> bool:
        """True when every lease of a round that closed at ``round_closed_at``
        has surely expired (each was granted while the round was open)."""
        return round_closed_at is not None and now > round_closed_at + self.lease_s

    def _expire(self, now: float, current: int | None = None) -> None:
        oldest = None
        if current is not None and self.max_staleness is not None:
            oldest = current - self.max_staleness
        for device_id, lease in list(self._live.items()):
            if now > lease.expires_at:
                del self._live[device_id]
                self._remember(device_id, lease.round_id)
            elif oldest is not None and lease.round_id < oldest:
                # Not remembered: an upload on it is refused as too_stale, as before.
                del self._live[device_id]

    def _remember(self, device_id: str, round_id: int) -> None:
        self._ended[device_id] = round_id
        self._ended.move_to_end(device_id)
        while len(self._ended) > REMEMBERED:
            self._ended.popitem(last=False)


def lease_prefix(round_id: int, device_id: str) -> str:
    """The start of the file name of a device's update on a round (its
    lease, in async mode): ``r<round>/<device>-``."""
    return f"r{round_id:06d}/{device_id}-"
