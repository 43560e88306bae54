"""Devices never seen again are forgotten after ``device_ttl_s``.

A device that enrolled and went away (an uninstalled app, or a flood of
enrolments nobody uses) would otherwise keep its row forever. A thread
sweeps now and then: devices last seen (enrolled, checked in, sent a
heartbeat) more than ``device_ttl_s`` ago are deleted with their rows,
unless they hold something in progress: a seat or an update in the round
in progress, an update file not yet cleared, or a report on the release
in canary (see :meth:`~fedge.server.storage.store.DeviceRows.expire`). Such
a device goes in a later sweep. Its token stops working; it can enrol again.

Sweeps run every ``ttl / 4`` (at most hourly), in batches, so that no
transaction holds the database long; the device count is kept by the same
transactions.
"""

from __future__ import annotations

import logging
import threading
import time

from fedge.server.metrics import Metrics
from fedge.server.storage.store import Store, StoreError

BATCH = 500
MAX_SWEEP_EVERY_S = 3600.0
EXPIRED_METRIC = "fedge_devices_expired_total"
log = logging.getLogger("fedge.server")


def expire_devices(store: Store, ttl_s: float, now: float) -> int:
    """Delete the devices unseen for ``ttl_s`` that hold nothing in progress; how many went."""
    total = 0
    while True:
        with store.transaction() as tx:
            gone = tx.devices.expire(now - ttl_s, BATCH)
        total += gone
        if gone < BATCH:
            return total


class DeviceExpiry:
    """The sweeping thread; :meth:`stop` ends it."""

    def __init__(self, store: Store, ttl_s: float, metrics: Metrics) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._metrics = metrics
        metrics.define(EXPIRED_METRIC, "counter", "Devices forgotten after device_ttl_s unseen.")
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fedge-device-expiry", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def sweep(self) -> int:
        gone = expire_devices(self._store, self._ttl_s, time.time())
        if gone:
            self._metrics.inc(EXPIRED_METRIC, float(gone))
            with self._store.reading() as tx:
                self._metrics.set("fedge_devices", tx.devices.count())
        return gone

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        every = min(self._ttl_s / 4, MAX_SWEEP_EVERY_S)
        while not self._stopped.wait(every):
            try:
                self.sweep()
            except StoreError:
                log.exception("device expiry failed; trying again later")
        self._store.close_thread_connection()
