"""The sparse neighbour graph of SecAgg+: who masks with whom.

Both sides compute it from the round's device list and a seed the server
draws when key advertising closes: a ring over the devices shuffled by
``SHA-256(seed || id)``, each joined to the k/2 nearest on either side
(k even), or the complete graph when k = n - 1. Every device has exactly k
neighbours and the relation is symmetric. The shuffle keeps which devices
neighbour each other independent of their ids.
"""

from __future__ import annotations

import hashlib


def neighbours_of(device_ids: list[str], seed: bytes, neighbours: int) -> dict[str, list[str]]:
    n = len(device_ids)
    if neighbours >= n - 1:
        return {d: sorted(o for o in device_ids if o != d) for d in device_ids}
    if neighbours % 2:
        raise ValueError("a sparse graph needs an even number of neighbours")
    ring = sorted(device_ids, key=lambda d: hashlib.sha256(seed + d.encode()).digest())
    half = neighbours // 2
    graph: dict[str, list[str]] = {}
    for i, device in enumerate(ring):
        others = {ring[(i + step) % n] for step in range(-half, half + 1) if step}
        graph[device] = sorted(others)
    return graph


def share_index(device_ids: list[str], device: str) -> int:
    """A device's Shamir x-coordinate: its place in the sorted list, from 1."""
    return sorted(device_ids).index(device) + 1
