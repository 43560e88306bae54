"""A canary that gets no decisive reports still ends: the round driver
settles it every few seconds (:func:`fedge.server.releases.canary.reports.settle`),
so ``canary_max_s`` ends it with the configured default and the slice
widens when its counted devices have all reported, with or without new
reports. Runs on the driver's thread, never in a request.
"""

from __future__ import annotations

import logging
import time

from fedge.server.config import ServerConfig
from fedge.server.errors import ServerError
from fedge.server.releases.canary import reports
from fedge.server.rounds.coordinator import Coordinator
from fedge.server.storage.store import Store, StoreError

log = logging.getLogger("fedge.server")

EVERY_S = 5.0


class CanaryDeadline:
    def __init__(self, config: ServerConfig, store: Store) -> None:
        self._policy = reports.policy_of(config)
        self._store = store
        self._last = 0.0

    def tick(self) -> None:
        now = time.time()
        if now - self._last < EVERY_S:
            return
        self._last = now
        try:
            with self._store.reading() as tx:
                if tx.releases.delivering()[1] is None:
                    return  # no candidate: nothing to settle, no write lock taken
            with self._store.transaction() as tx:
                outcome = reports.settle(tx, self._policy, now)
        except (ServerError, StoreError) as exc:  # the next tick tries again
            log.warning("canary: could not settle the candidate: %s", exc)
            return
        if outcome is not None:
            log.info("canary: the candidate ended by a limit: %s", outcome)


def attach_deadline(config: ServerConfig, store: Store, coordinator: Coordinator) -> None:
    coordinator.after_each_step(CanaryDeadline(config, store).tick)
