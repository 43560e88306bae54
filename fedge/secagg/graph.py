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
    """Every device's neighbours (the server's view)."""
    ring = _ring(device_ids, seed, neighbours)
    return {d: _around(ring, i, neighbours) for i, d in enumerate(ring)}


def neighbours_of_one(
    device_ids: list[str], seed: bytes, neighbours: int, device: str
) -> list[str]:
    """One device's neighbours (a device's view: it needs only its own)."""
    ring = _ring(device_ids, seed, neighbours)
    return _around(ring, ring.index(device), neighbours)


def _ring(device_ids: list[str], seed: bytes, neighbours: int) -> list[str]:
    if neighbours < len(device_ids) - 1 and neighbours % 2:
        raise ValueError("a sparse graph needs an even number of neighbours")
    return sorted(device_ids, key=lambda d: hashlib.sha256(seed + d.encode()).digest())


def _around(ring: list[str], i: int, neighbours: int) -> list[str]:
    n = len(ring)
    if neighbours >= n - 1:
        return sorted(d for d in ring if d != ring[i])
    half = neighbours // 2
    return sorted({ring[(i + step) % n] for step in range(-half, half + 1) if step})


def share_index(device_ids: list[str], device: str) -> int:
    """A device's Shamir x-coordinate: its place in the sorted list, from 1."""
    return sorted(device_ids).index(device) + 1


def share_indices(device_ids: list[str]) -> dict[str, int]:
    """:func:`share_index` of every device at once."""
    return {d: i + 1 for i, d in enumerate(sorted(device_ids))}
