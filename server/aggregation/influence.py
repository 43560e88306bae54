"""Bounds on how far a few devices can steer a round: pure NumPy-free
arithmetic on plain numbers, no server dependency.

Two bounds complement the per-update ones of the pipeline (the norm bound,
the capped weight):

* **the share cap** (:func:`share_capped_weights`): no update's share of a
  round's total weight exceeds ``multiple / n`` for ``n`` updates; what is
  cut is given to no one (the others keep their weights, so their shares
  grow). A round's weights are only all known once it closes, so the cap
  is applied then, to the streamed sum
  (:meth:`~fedge.server.aggregation.kernels.StreamingMean.take_back`);
* **the adaptive norm bound** (:func:`median_norm_bound`): a multiple of the
  median norm of recent rounds' accepted updates, so that the bound follows
  what honest updates look like instead of a fixed, generous number.

Why these numbers, and what fraction of malicious updates a round then
tolerates: ``docs/aggregation.md``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from fedge.server.aggregation.errors import AggregationError


def max_share(n: int, multiple: float) -> float:
    """The largest share of a round's weight one of ``n`` updates may hold:
    ``multiple / n`` (at most 1; ``multiple`` >= 1, so equal shares always fit)."""
    if n < 1:
        raise AggregationError("a round's share cap needs at least one update")
    if not multiple >= 1.0:
        raise AggregationError(f"the share multiple must be >= 1, got {multiple}")
    return min(1.0, multiple / n)


def share_capped_weights(weights: Sequence[float], cap: float) -> list[float]:
    """``weights`` with every one lowered to at most ``cap`` times the new
    total, the others unchanged: the largest are cut to one level ``t``
    with ``t = cap * total`` (water-filling from the top).

    With ``k`` weights cut to ``t`` and the rest summing to ``u``, the new
    total is ``k t + u``, so ``t = cap u / (1 - k cap)``; weights are cut
    from the largest down while the next one is still above that level.
    ``cap * len(weights)`` must be at least 1 (equal shares fit).
    """
    if not weights:
        return []
    if any(not (math.isfinite(w) and w > 0) for w in weights):
        raise AggregationError("weights must be positive finite numbers")
    if not 0 < cap <= 1 or cap * len(weights) < 1 - 1e-12:
        raise AggregationError(f"a share cap of {cap} cannot hold {len(weights)} updates")
    rest = math.fsum(weights)
    for cut, weight in enumerate(sorted(weights, reverse=True)):
        room = 1.0 - cut * cap
        if room <= 1e-12:
            break
        level = cap * rest / room
        if weight <= level:
            return list(weights) if cut == 0 else [min(w, level) for w in weights]
        rest -= weight
    # Every weight is cut (cap * n == 1): equal shares.
    return [min(weights)] * len(weights)


def median_norm_bound(
    norms: Sequence[float], multiple: float, *, min_norms: int = 3
) -> float | None:
    """``multiple`` times the median of ``norms`` (recent accepted updates'
    norms as received); ``None`` while fewer than ``min_norms`` are known
    (the caller falls back to its fixed bound) or when the median is 0."""
    finite = [n for n in norms if math.isfinite(n) and n >= 0]
    if len(finite) < min_norms:
        return None
    median = statistics.median(finite)
    if not median > 0:
        return None
    return multiple * median
