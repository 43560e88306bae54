"""The running weighted sum of the round in progress, and the lock that
keeps it in step with the database.

The sum is O(model size) whatever the number of devices, and holds exactly
the updates committed to the round in progress: an upload commits its row
and adds to the sum under :attr:`RoundSum.lock`
(:mod:`fedge.server.rounds.ingest`), and the round lifecycle ends a round and
starts a new sum under the same lock (:mod:`fedge.server.rounds.lifecycle`).
At start it is rebuilt from the stored updates (:mod:`fedge.server.rounds.recovery`).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from fedge.server.aggregation.kernels import StreamingMean
from fedge.wire.update_codec import Weights


class RoundSum:
    def __init__(self) -> None:
        # Re-entrant: an admin's end_round_now holds it and drives the round.
        self.lock = threading.RLock()
        self.mean = StreamingMean()
        # Asynchronous aggregation: each device's (staleness, factor) in this
        # buffer (rounds.buffered.staleness); the close's share cap weighs by the factor.
        self.factors: dict[str, tuple[int, float]] = {}
        # The devices whose update is in the sum: with several workers the
        # aggregator folds in what others committed, each update once
        # (fedge.server.rounds.workers.catch_up).
        self.devices: set[str] = set()

    @property
    def count(self) -> int:
        """Updates in the sum."""
        return self.mean.count

    def add(self, deltas: Weights, weight: float) -> int:
        """Add one validated, prepared update; returns the new count."""
        with self.lock:
            self.mean.add(deltas, weight, check_finite=False)
            return self.mean.count

    def add_many(self, deltas: Sequence[Weights], weights: Sequence[float]) -> int:
        """Add a batch of validated, prepared updates (a group commit's) at
        once: the float64 sum is read once for all of them."""
        with self.lock:
            self.mean.add_many(deltas, weights, check_finite=False)
            return self.mean.count

    def restart(self) -> None:
        """Empty, for the next round (called once the round has ended)."""
        with self.lock:
            self.mean = StreamingMean()
            self.factors = {}
            self.devices = set()
