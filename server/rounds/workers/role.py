"""Whether this process is the aggregator, and the change from one to the other.

The round driver asks :meth:`AggregatorRole.refresh` at every step (every
``tick_s``, and when an update committed anywhere wakes it). A process
that takes the lease rebuilds the global model and the running sum from
the stored updates, exactly as a restart's recovery does, before it
folds or closes anything; one that finds it lost (its connection to the
database was cut) empties its sum and stops driving rounds. Both changes
happen under the sum's lock, which ingest holds while it decides whether
to fold a committed batch, so each committed update is in the sum once:
folded by the aggregator's own ingest, by the recovery, or by a catch-up.

A holder that lost its connection may still be finishing a step when
another process takes over: every change of a round's state is a
compare-and-set under the database's write lock, so one of them does it
and the other's transaction fails and is not retried by it as aggregator.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable

from fedge.server.metrics import Metrics
from fedge.server.rounds.running_sum import RoundSum
from fedge.server.storage.lease import Lease

log = logging.getLogger("fedge.server")


def default_worker_id() -> str:
    """``<host>:<pid>``: unique among the processes of a deployment."""
    return f"{socket.gethostname()[:28]}:{os.getpid()}"


class AggregatorRole:
    def __init__(
        self,
        lease: Lease,
        round_sum: RoundSum,
        promote: Callable[[], None],
        metrics: Metrics,
    ) -> None:
        """``promote``: rebuild what the aggregator keeps in memory (runs
        under the sum's lock, once the lease is held)."""
        self.lease = lease
        self._sum = round_sum
        self._promote = promote
        self._metrics = metrics
        self._active = False

    @property
    def active(self) -> bool:
        """This process folds updates and drives rounds (read it under the sum's lock)."""
        return self._active

    def refresh(self) -> bool:
        """Take or keep the lease; True while this process is the aggregator."""
        held = self.lease.hold()
        with self._sum.lock:
            if held and not self._active:
                # A recovery that fails (the database went away meanwhile) is
                # tried again at the next step; the lease is kept.
                self._promote()
                self._active = True
                self._metrics.set("fedge_aggregator", 1)
                log.info("worker %s is the aggregator", self.lease.worker_id)
            elif not held and self._active:
                self._active = False
                self._sum.restart()
                self._metrics.set("fedge_aggregator", 0)
                log.warning("worker %s is no longer the aggregator", self.lease.worker_id)
        return held and self._active

    def stop(self) -> None:
        with self._sum.lock:
            self._active = False
        self.lease.release()
