"""Rebuilding the live training leases at start (asynchronous aggregation).

A lease is written as a selection row (its version, its device and when it
was granted, renewed on a new grant on the same version), in the same
transaction that hands out the task. At start every row that may still be
a live lease is read back:

* its version is at most ``max_staleness`` behind the open one (an older
  one could not be uploaded any more);
* it was granted less than ``lease_s`` ago;
* it is the device's newest lease (a newer one replaced it);
* no update of the device on it is stored yet (an accepted update frees
  the slot), in the buffer of its version or of a later one.

So after a restart, or a kill -9, the concurrency count is what it was, a
device that asks again gets the task it held, and its upload is checked
against the lease's end as before.
"""

from __future__ import annotations

from fedge.server.rounds.buffered.leases import Leases, lease_prefix
from fedge.server.storage.store import Store


def rebuild_leases(store: Store, leases: Leases, max_staleness: int, now: float) -> int:
    """Restore the live leases into ``leases``; how many there are."""
    with store.reading() as tx:
        current = tx.rounds.open() or tx.rounds.active()
        if current is None:
            return 0
        newest: dict[str, tuple[int, float]] = {}
        for round_id, device_id, granted_at in tx.selections.since(
            current.id - max_staleness, now - leases.lease_s
        ):
            held = newest.get(device_id)
            if held is None or (round_id, granted_at) > held:
                newest[device_id] = (round_id, granted_at)
        live = []
        for device_id, (round_id, granted_at) in newest.items():
            prefix = lease_prefix(round_id, device_id)
            uploaded = False
            for buffer in range(round_id, current.id + 1):
                stored = tx.updates.get(buffer, device_id)
                if stored is not None and stored.path.startswith(prefix):
                    uploaded = True
                    break
            if not uploaded:
                live.append((device_id, round_id, granted_at))
    for device_id, round_id, granted_at in live:
        leases.restore(device_id, round_id, granted_at)
    return len(live)
