"""Adding many updates at once into a float64 sum, one cache-sized block at a time.

Adding updates one by one into a float64 sum costs, per float32 element,
a read of 4 bytes plus a read-modify-write of 8 bytes of the sum: the sum
of a large model does not fit in the cache, so every update streams it
through memory twice. With K updates at hand (a group commit's batch),
each block of coordinates is instead gathered from the K updates into a
small float64 stack that stays in the cache, reduced by one BLAS
matrix-vector product (``weights @ stack``, dgemv: every product and sum in
float64), and added to the sum once. The sum then crosses memory once per
batch instead of once per update, and the updates are each read once.

Finiteness comes for free: NaN or inf in any update makes that block's
product non-finite (float32 values times finite float64 weights cannot
overflow float64 unless a weight is absurd, which is refused too), so only
the block result is checked, not every value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from fedge.server.aggregation.errors import AggregationError

Float64Array = npt.NDArray[np.float64]

# The float64 stack of one block (updates x block x 8 bytes) is kept to
# about this size: it and the block of the sum stay in L2 (or close to
# it) while the BLAS product runs. Blocks are at least _MIN_BLOCK elements
# long so that the Python work per block (one slice per update) stays
# small next to the arithmetic: on a 2-core EPYC with 50 updates,
# 4096-8192 measured best, 32768 (a 13 MB stack) 3x slower.
_STACK_BUDGET_BYTES = 2 << 20
_MIN_BLOCK = 8192
_MAX_BLOCK = 1 << 16


def block_elems(updates: int) -> int:
    """Coordinates per block for a batch of ``updates``."""
    per_update = _STACK_BUDGET_BYTES // (8 * max(updates, 1))
    return max(_MIN_BLOCK, min(_MAX_BLOCK, per_update))


def add_weighted(
    total: Float64Array,
    flats: Sequence[npt.NDArray[Any]],
    weights: Sequence[float],
    *,
    name: str,
    check_finite: bool,
) -> Float64Array:
    """``total + sum(w * flat)`` in float64, block by block.

    With ``check_finite`` the sum goes into a new array and ``total`` is
    left as it was, so a batch refused part-way (a non-finite value in
    some block) changes nothing; the caller keeps the returned array.
    Without it (the caller validated the updates already) ``total`` is
    updated in place and returned.
    """
    count = len(flats)
    if count != len(weights):
        raise AggregationError(f"{len(weights)} weights for {count} updates")
    size = total.size
    out = np.empty_like(total) if check_finite else total
    factors = np.asarray(weights, dtype=np.float64)
    step = block_elems(count)
    stack = np.empty((count, min(step, size)), dtype=np.float64)
    block_sum = np.empty(min(step, size), dtype=np.float64)
    for start in range(0, size, step):
        stop = min(start + step, size)
        width = stop - start
        rows = stack if width == stack.shape[1] else np.empty((count, width), np.float64)
        for index, flat in enumerate(flats):
            rows[index] = flat[start:stop]  # float32 -> float64, in the cache
        reduced = block_sum[:width]
        np.dot(factors, rows, out=reduced)
        if check_finite and not math.isfinite(float(np.add.reduce(reduced))):
            _raise_non_finite(rows, name, start)
        np.add(total[start:stop], reduced, out=out[start:stop])
    return out


def _raise_non_finite(rows: Float64Array, name: str, start: int) -> None:
    """Name the first update whose block holds NaN or inf."""
    bad = np.nonzero(~np.isfinite(rows).all(axis=1))[0]
    index = int(bad[0]) if bad.size else 0
    what = f"update {index}" if bad.size else "batch"
    raise AggregationError(
        f"{what}: {name} has non-finite (or overflowing) values (from element {start})"
    )
