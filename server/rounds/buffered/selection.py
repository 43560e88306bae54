"""Handing out work in asynchronous aggregation (FedBuff).

Why versions are rounds: everything a synchronous round needs an
asynchronous version needs too (a base checkpoint, durable selections and
receipts, a running weighted sum, a close that runs the strategy, stores a
checkpoint, counts participations and opens the next one in one
transaction, recovery at start). So a *version* is a round of this mode
whose close condition is "``buffer`` accepted updates" (never a deadline:
acknowledged updates are never abandoned) and whose buffer also takes
uploads trained on earlier versions, up to ``max_staleness`` back (see
:mod:`fedge.server.rounds.buffered.staleness` and :mod:`fedge.server.rounds.ingest`).
The routes, the task and the receipt are the same in both modes, so every
device (Python, the browser page, the web SDK) joins unchanged; only who
gets a task differs, which is this module.

A device that asks (``POST /v1/tasks``) is given, in one transaction:

* the task it already holds, while its lease is live and its version is
  within the staleness bound (asking twice never takes two slots);
* ``already_contributed`` while its update is in the open version's buffer
  (one update per device and server step: a flood from one device counts
  once);
* ``concurrency_full`` while ``concurrency`` devices hold live leases, with
  ``retry_after_s`` spread over the devices (pace steering) and
  ``retry_round`` the next version;
* else a lease on the open version: a selection row (what uploads are
  checked against, durable) and the task, whose ``deadline_at`` is the
  lease's end.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import replace

from fedge.server.round_config import RoundConfig
from fedge.server.rounds import admission
from fedge.server.rounds.admission import Refusal
from fedge.server.rounds.buffered.leases import Leases
from fedge.server.rounds.buffered.staleness import StalenessPolicy
from fedge.server.rounds.selection import TaskDecision, check_in, task_for
from fedge.server.storage import rounds as rs
from fedge.server.storage.devices import Conditions, Device
from fedge.server.storage.store import Store

# Pace steering: a refused device asks again after 1 to this many times
# the expected wait for a free slot (spread by a stable hash of its id).
PACE_SPREAD = 4.0


class AsyncSelector:
    def __init__(
        self,
        store: Store,
        rounds: RoundConfig,
        leases: Leases,
        staleness: StalenessPolicy,
        model_name: str,
        weight_names: list[str],
    ) -> None:
        self._store = store
        self._rounds = rounds
        self._leases = leases
        self._staleness = staleness
        self._model_name = model_name
        self._weight_names = list(weight_names)

    def request_task(
        self, device: Device, conditions: Conditions, now: float | None = None
    ) -> TaskDecision:
        now = time.time() if now is None else now
        with self._store.transaction(durable=False) as tx:
            current = check_in(tx, self._rounds, device.id, conditions, now)
            if isinstance(current, Refusal):  # no open round: a step is being retried
                return TaskDecision.refused(current)
            lease = self._leases.live(device.id, now)
            if lease is not None:
                if current.id - lease.round_id <= self._staleness.max_staleness:
                    held = tx.rounds.get(lease.round_id)
                    if held is not None:
                        return self._task(held, lease.expires_at)
                self._leases.drop(device.id)  # too stale to be worth finishing
            # Counted and granted under the leases' lock (Leases.grant): never over.
            if tx.updates.get(current.id, device.id) is not None:
                return TaskDecision.refused(admission.ALREADY_CONTRIBUTED, current.id + 1)
            granted = self._leases.grant(device.id, current.id, now)
            if granted is None:
                return TaskDecision.refused(self._pace(device.id, current.id), current.id + 1)
            if not tx.selections.contains(current.id, device.id):
                tx.selections.add(current.id, device.id, now)
            else:  # a new lease on the same version: its row says when (lease_rebuild)
                tx.selections.renew(current.id, device.id, now)
        return self._task(current, granted.expires_at)

    def _task(self, record: rs.RoundRecord, expires_at: float) -> TaskDecision:
        task = task_for(
            replace(record, deadline_at=expires_at), self._model_name, self._weight_names
        )
        return TaskDecision(task)

    def _pace(self, device_id: str, round_id: int) -> Refusal:
        """``concurrency_full``: ask again once a slot is likely free. A slot
        frees about every ``lease_s / concurrency`` seconds at worst; the
        refused spread over 1 to PACE_SPREAD times that."""
        slot_s = self._leases.lease_s / max(self._leases.concurrency, 1)
        digest = hashlib.blake2b(f"{device_id}:{round_id}".encode(), digest_size=8).digest()
        spread = 1.0 + (PACE_SPREAD - 1.0) * int.from_bytes(digest, "big") / 2**64
        return Refusal("concurrency_full", round(min(30.0, max(0.5, slot_s * spread)), 3))
