"""Adding many updates at once into a float64 sum, one cache-sized block at a time.

Adding updates one by one into a float64 sum costs, per float32 element,
a read of 4 bytes plus a read-modify-write of 8 bytes of the sum: the sum
of a large model does not fit in the cache, so every update streams it
through memory twice. With K updates at hand (a group commit's batch),
each block of coordinates is instead gathered from the K updates into a
float64 stack that stays in the cache, reduced by one BLAS matrix-vector
product (``weights @ stack``, dgemv: every product and sum in float64),
and added to the sum once. The sum then crosses memory once per batch
instead of once per update, and the updates are each read once.

Where the time goes (50 updates x 1M float32 on the 2-core EPYC, one
core, see ``bench/reports/aggregation.md``): the gather, which is also the
float32 -> float64 conversion, costs about 1.2x NumPy's own pass over the
same bytes (``x.sum()``); the dgemv over the cached stack about half a
pass more; the Python loop (one slice per update and block) a few percent.
The block is therefore as wide as the cache allows (fewer slices, longer
BLAS rows), and a batch into an empty sum (the first of a round) writes
the product straight into the new sum: no zeroed array to add to.

Finiteness comes for free: NaN or inf in any update makes that block's
product non-finite (float32 values times finite float64 weights cannot
overflow float64 unless a weight is absurd, which is refused too; a zero
weight keeps NaN and turns inf into NaN), so only the block result is
checked, not every value; the culprit is looked for only then.
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
# about this size, within the bounds below: on the 2-core EPYC (1 MiB L2
# per core, 32 MiB shared L3), 50 updates x 1M measured (ms, one core,
# memory pass 10): block 4096 25, 8192 20, 16384 16, 32768 16, 65536 26;
# 10 updates: 32768-65536 best. Wider blocks mean fewer Python slices and
# longer BLAS rows, until the stack no longer stays in the cache. More
# than GROUP_ROWS updates are reduced a group at a time (one product per
# group, summed in the cached block): 200 updates measured 107 ms in
# groups of 50 x 20480, 132 ms as one 200 x 8192 stack (memory pass 57).
_STACK_BUDGET_BYTES = 8 << 20
GROUP_ROWS = 64
_MIN_BLOCK = 8192
_MAX_BLOCK = 1 << 16


def group_rows(updates: int) -> int:
    """Updates per BLAS product: all of them, or balanced groups of at most
    ``GROUP_ROWS``."""
    groups = -(-max(updates, 1) // GROUP_ROWS)
    return -(-max(updates, 1) // groups)


def block_elems(updates: int) -> int:
    """Coordinates per block for a batch of ``updates`` (a multiple of 1024)."""
    per_update = _STACK_BUDGET_BYTES // (8 * group_rows(updates))
    return max(_MIN_BLOCK, min(_MAX_BLOCK, per_update // 1024 * 1024))


def add_weighted(
    total: Float64Array | None,
    flats: Sequence[npt.NDArray[Any]],
    weights: Sequence[float],
    *,
    name: str,
    check_finite: bool,
    shape: tuple[int, int] | None = None,
) -> Float64Array:
    """``total + sum(w * flat)`` in float64, block by block; with ``total``
    None (an empty sum), ``sum(w * flat)`` into a new array.

    With ``check_finite`` and a ``total``, the sum goes into a new array
    and ``total`` is left as it was, so a batch refused part-way (a
    non-finite value in some block) changes nothing; the caller keeps the
    returned array. Without it (the caller validated the updates already)
    ``total`` is updated in place and returned. ``shape`` (updates per
    product, coordinates per block) overrides the cache sizing, for
    benchmarks that compare shapes.
    """
    count = len(flats)
    if count != len(weights):
        raise AggregationError(f"{len(weights)} weights for {count} updates")
    if count == 0:
        raise AggregationError("no updates to add")
    size = flats[0].size if total is None else total.size
    for index, flat in enumerate(flats):
        if flat.shape != (size,):
            raise AggregationError(f"update {index}: {name} has {flat.size} values, not {size}")
    out = total if total is not None and not check_finite else np.empty(size, np.float64)
    factors = np.asarray(weights, dtype=np.float64)
    rows, step = (group_rows(count), block_elems(count)) if shape is None else shape
    if rows < 1 or step < 1:
        raise AggregationError(f"a block shape needs positive sizes, got {shape}")
    groups = [(first, min(first + rows, count)) for first in range(0, count, rows)]
    stack = np.empty((rows, min(step, size)), dtype=np.float64)
    scratch = np.empty((2, min(step, size)), dtype=np.float64)
    for start in range(0, size, step):
        stop = min(start + step, size)
        width = stop - start
        # Into the result itself when there is nothing to add to it.
        reduced = out[start:stop] if total is None else scratch[0, :width]
        for first, last in groups:
            part = stack[: last - first, :width]
            for index in range(first, last):
                part[index - first] = flats[index][start:stop]  # float32 -> float64, cached
            if first == 0:
                np.dot(factors[first:last], part, out=reduced)
            else:
                np.dot(factors[first:last], part, out=scratch[1, :width])
                np.add(reduced, scratch[1, :width], out=reduced)
        if check_finite and not math.isfinite(float(np.add.reduce(reduced))):
            _raise_non_finite(flats, name, start, stop)
        if total is not None:
            np.add(total[start:stop], reduced, out=out[start:stop])
    return out


def _raise_non_finite(flats: Sequence[npt.NDArray[Any]], name: str, start: int, stop: int) -> None:
    """Name the first update whose block holds NaN or inf."""
    for index, flat in enumerate(flats):
        if not np.isfinite(flat[start:stop]).all():
            raise AggregationError(
                f"update {index}: {name} has non-finite values (from element {start})"
            )
    raise AggregationError(f"batch: {name} overflows (from element {start})")
