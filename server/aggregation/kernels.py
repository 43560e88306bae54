"""Aggregation of device weight deltas: pure NumPy, no server dependency.

Two shapes of computation, because they have different memory needs:

* the **mean** family (FedAvg, FedAvgM, FedAdam, central DP) only needs a
  running weighted sum, so :class:`StreamingMean` adds each update as it
  arrives and forgets it: O(model) memory however many devices report;
* the **robust** aggregates (:func:`coordinate_median`, :func:`trimmed_mean`)
  need every update's value of a coordinate at once. They read the stored
  updates through an :class:`UpdateSource` one block of coordinates at a
  time, so memory is O(updates x block), never O(updates x model).

Deltas are ``Weights`` (``dict[str, ndarray]``) keyed by the canonical
weight names of the bundle manifest; results come back in the canonical
order (the order of the first update, or of the given ``spec``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from fedge.server.aggregation.blocked import add_weighted
from fedge.server.aggregation.errors import AggregationError
from fedge.server.aggregation.sources import (
    InMemoryUpdates,
    SafetensorsFileUpdates,
    UpdateSource,
    check_spec,
    spec_of,
)
from fedge.wire.update_codec import Weights, global_norm
from fedge.wire.weight_spec import ModelSpec

__all__ = [
    "AggregationError",
    "InMemoryUpdates",
    "SafetensorsFileUpdates",
    "StreamingMean",
    "UpdateSource",
    "check_spec",
    "clip_by_global_norm",
    "clip_factor",
    "coordinate_median",
    "scale_weights",
    "spec_of",
    "trimmed_mean",
]

Float32Array = npt.NDArray[np.float32]
Float64Array = npt.NDArray[np.float64]

# Elements scaled per step of StreamingMean.add: 512 KiB of float64 stays in
# L2, so the scaled copy costs no extra trip to memory.
_CHUNK_ELEMS = 1 << 16
# Robust aggregation: the block of coordinates read from every update at
# once is sized to about this many bytes (n_updates x block x 4), within
# the bounds below (small blocks pay per-read overhead, large ones miss
# the cache when partitioning).
_BLOCK_BUDGET_BYTES = 32 * 1024 * 1024
_MIN_BLOCK_ELEMS = 1024
_MAX_BLOCK_ELEMS = 16384


class StreamingMean:
    """A weighted mean of deltas, added one at a time, in O(model) memory.

    The sum is kept in float64: a float32 sum of hundreds of updates loses
    the low bits of small deltas, and a float32 product of a huge (finite)
    delta and its weight overflows. Each delta is scaled by its weight into a
    float64 scratch chunk and added into the float64 sum chunk by chunk, so
    no model-sized temporary is allocated per update.

    A rejected ``add`` (bad names, shapes, weight or values) raises before
    anything is changed, so the mean never holds half an update. Not
    thread-safe (one scratch buffer): callers serialise ``add``.
    """

    def __init__(self, spec: ModelSpec | None = None) -> None:
        self._spec: ModelSpec | None = None
        self._sums: dict[str, Float64Array] = {}
        self._count = 0
        self._total_weight = 0.0
        self._scratch = np.empty(_CHUNK_ELEMS, dtype=np.float64)
        if spec is not None:
            self._start(spec)

    @property
    def count(self) -> int:
        return self._count

    @property
    def total_weight(self) -> float:
        return self._total_weight

    @property
    def spec(self) -> ModelSpec | None:
        return self._spec

    def add(
        self, delta: Mapping[str, npt.NDArray[Any]], weight: float, *, check_finite: bool = True
    ) -> None:
        """Add one update with its weight (usually its ``num_examples``).

        ``check_finite=False`` skips one read of the update, for callers that
        already checked it (e.g. when clipping it at acceptance time).
        """
        weight = float(weight)
        if not (math.isfinite(weight) and weight > 0):
            raise AggregationError(f"weight must be a positive finite number, got {weight}")
        spec = self._spec if self._spec is not None else spec_of(delta)
        check_spec(spec, delta, "update")
        flats = {name: np.asarray(delta[name]).reshape(-1) for name in spec.names}
        if check_finite:
            _require_finite(flats, "update")
        if self._spec is None:
            self._start(spec)
        for name, flat in flats.items():
            self._accumulate(self._sums[name], flat, weight)
        self._count += 1
        self._total_weight += weight

    def add_many(
        self,
        deltas: Sequence[Mapping[str, npt.NDArray[Any]]],
        weights: Sequence[float],
        *,
        check_finite: bool = True,
    ) -> None:
        """Add several updates with their weights, as ``add`` each would,
        but reading the float64 sum once for all of them (see
        :mod:`fedge.server.aggregation.blocked`): a group commit's batch.

        All or nothing: a refused batch (any bad update) raises before the
        mean changes. The sum may differ from one-by-one ``add`` calls in
        the last float64 bits (the order of the additions differs).
        """
        if len(deltas) != len(weights):
            raise AggregationError(f"{len(weights)} weights for {len(deltas)} updates")
        if len(deltas) <= 1:
            for delta, weight in zip(deltas, weights, strict=True):
                self.add(delta, weight, check_finite=check_finite)
            return
        factors = [float(weight) for weight in weights]
        for weight in factors:
            if not (math.isfinite(weight) and weight > 0):
                raise AggregationError(f"weight must be a positive finite number, got {weight}")
        spec = self._spec if self._spec is not None else spec_of(deltas[0])
        flats = []
        for index, delta in enumerate(deltas):
            check_spec(spec, delta, f"update {index}")
            flats.append({name: np.asarray(delta[name]).reshape(-1) for name in spec.names})
        # An empty mean (the round's first batch) takes the batch's sum as
        # its own: nothing to zero and add to.
        sums: dict[str, Float64Array] = {}
        for name in spec.names:
            parts = [flat[name] for flat in flats]
            sums[name] = add_weighted(
                self._sums.get(name), parts, factors, name=name, check_finite=check_finite
            )
        self._spec = spec
        self._sums = sums
        self._count += len(flats)
        self._total_weight += sum(factors)

    def take_back(self, delta: Mapping[str, npt.NDArray[Any]], weight: float) -> None:
        """Remove ``weight`` of an update added earlier with a larger weight
        (a round's share cap, applied at close): the sum loses
        ``weight * delta`` and the total ``weight``; the count is unchanged."""
        weight = float(weight)
        if not (math.isfinite(weight) and 0 < weight < self._total_weight):
            raise AggregationError(f"cannot take back a weight of {weight} from the mean")
        spec = self._spec
        if spec is None:
            raise AggregationError("no updates to take back from")
        check_spec(spec, delta, "update")
        for name in spec.names:
            flat = np.asarray(delta[name]).reshape(-1)
            self._accumulate(self._sums[name], flat, -weight)
        self._total_weight -= weight

    def copy(self) -> StreamingMean:
        """An independent copy (a close that may fail and be retried works
        on a copy, so the running sum is never half-changed)."""
        twin = StreamingMean()
        twin._spec = self._spec
        twin._sums = {name: total.copy() for name, total in self._sums.items()}
        twin._count = self._count
        twin._total_weight = self._total_weight
        return twin

    def scaled(self, factor: float) -> StreamingMean:
        """An independent copy whose mean is ``factor`` times this one's (the
        weights and the count unchanged): FedBuff's step, a buffer's mean
        scaled by its mean staleness factor."""
        factor = float(factor)
        if not (math.isfinite(factor) and factor > 0):
            raise AggregationError(f"scale must be a positive finite number, got {factor}")
        twin = self.copy()
        for total in twin._sums.values():
            np.multiply(total, factor, out=total)
        return twin

    def result(self) -> Weights:
        """The weighted mean so far, float32, in canonical order."""
        if self._count == 0 or self._spec is None:
            raise AggregationError("no updates to average")
        result: Weights = {}
        for weight in self._spec:
            name, shape = weight.name, weight.shape
            # Divide straight into float32: no float64 model-sized temporary.
            # A mean beyond float32's range becomes inf here; callers check
            # the aggregate is finite before they store it.
            out = np.empty(shape, dtype=np.float32)
            with np.errstate(over="ignore"):
                np.divide(
                    self._sums[name].reshape(shape),
                    self._total_weight,
                    out=out,
                    casting="same_kind",
                )
            result[name] = out
        return result

    def _start(self, spec: ModelSpec) -> None:
        self._spec = spec
        self._sums = {weight.name: np.zeros(weight.size, dtype=np.float64) for weight in spec}

    def _accumulate(self, total: Float64Array, flat: npt.NDArray[Any], weight: float) -> None:
        """``total += weight * flat`` in float64, one cache-sized chunk at a time.

        The product is formed in float64, not float32: a finite float32 delta
        near 3.4e38 times a weight above one would overflow to inf and poison
        the sum (and every later round trained from it).
        """
        if weight == 1.0:
            np.add(total, flat, out=total)
            return
        for start in range(0, flat.size, _CHUNK_ELEMS):
            stop = min(start + _CHUNK_ELEMS, flat.size)
            scaled = self._scratch[: stop - start]
            np.multiply(flat[start:stop], weight, out=scaled, dtype=np.float64)
            part = total[start:stop]
            np.add(part, scaled, out=part)


def _require_finite(flats: Mapping[str, npt.NDArray[Any]], what: str) -> None:
    """Reject NaN and inf (and absurd values whose square overflows).

    A float32 dot product is the cheapest full read NumPy offers (BLAS, no
    temporary); NaN or inf anywhere makes it non-finite.
    """
    for name, flat in flats.items():
        if flat.size and not math.isfinite(float(np.dot(flat, flat))):
            raise AggregationError(f"{what}: {name} has non-finite (or overflowing) values")


def clip_factor(norm: float, max_norm: float) -> float:
    """The factor that brings an update of L2 norm ``norm`` to at most
    ``max_norm``: ``min(1, max_norm / norm)``. Every clip in fedge (the
    server's norm bound, central DP's clip) is decided here.

    Differential privacy rests on this bound, so a non-finite norm is an
    error rather than something to clip.
    """
    if not (math.isfinite(max_norm) and max_norm > 0):
        raise AggregationError(f"max_norm must be a positive finite number, got {max_norm}")
    if not math.isfinite(norm):
        raise AggregationError("update has non-finite values; it cannot be clipped")
    return min(1.0, max_norm / norm) if norm > 0 else 1.0


def scale_weights(delta: Mapping[str, npt.NDArray[Any]], factor: float) -> Weights:
    """``factor * delta`` as new float32 arrays (computed in float64; the
    input is never modified)."""
    return {
        name: (np.asarray(value, dtype=np.float64) * factor).astype(np.float32)
        for name, value in delta.items()
    }


def clip_by_global_norm(
    delta: Mapping[str, npt.NDArray[Any]], max_norm: float, *, norm: float | None = None
) -> tuple[Weights, float]:
    """Scale ``delta`` so its global L2 norm is at most ``max_norm``.

    Returns new float32 arrays (the input is never modified) and the norm
    before clipping. ``norm``, when the caller has measured it already, is
    not measured again.
    """
    measured = global_norm(delta) if norm is None else norm
    return scale_weights(delta, clip_factor(measured, max_norm)), measured


BlockReducer = Callable[[Float32Array], npt.NDArray[np.floating[Any]]]


def coordinate_median(source: UpdateSource, block_elems: int | None = None) -> Weights:
    """The coordinate-wise median of the updates (unweighted).

    With an even number of updates it is the mean of the two middle values,
    as ``np.median`` gives.
    """
    count = _require_updates(source)
    half = count // 2

    def reduce(block: Float32Array) -> npt.NDArray[np.floating[Any]]:
        # A full sort of each short row is several times faster than
        # np.partition's per-row selection (NumPy's vectorised sort), and
        # picks exactly the same values.
        block.sort(axis=1)
        if count % 2:
            return block[:, half]
        return (block[:, half - 1].astype(np.float64) + block[:, half]) * 0.5

    return _blockwise(source, block_elems, reduce)


def trimmed_mean(
    source: UpdateSource, trim_fraction: float, block_elems: int | None = None
) -> Weights:
    """The coordinate-wise mean after dropping the ``floor(trim_fraction*n)``
    smallest and largest values of each coordinate (unweighted)."""
    count = _require_updates(source)
    if not (math.isfinite(trim_fraction) and 0.0 <= trim_fraction < 0.5):
        raise AggregationError(
            f"trim_fraction must be in [0, 0.5) so that some values remain, got {trim_fraction}"
        )
    cut = int(trim_fraction * count)  # < count / 2, so at least one value is kept
    kept = count - 2 * cut

    def reduce(block: Float32Array) -> npt.NDArray[np.floating[Any]]:
        if cut:
            block.sort(axis=1)  # faster than partition here, see coordinate_median
        middle = block[:, cut : count - cut]
        total: Float64Array = middle.sum(axis=1, dtype=np.float64)
        return total / kept

    return _blockwise(source, block_elems, reduce)


def _require_updates(source: UpdateSource) -> int:
    count = len(source)
    if count == 0:
        raise AggregationError("no updates to aggregate")
    return count


def default_block_elems(n_updates: int) -> int:
    """Coordinates per block for ``n_updates``: about 32 MiB of float32."""
    per_update = _BLOCK_BUDGET_BYTES // (4 * max(n_updates, 1))
    return max(_MIN_BLOCK_ELEMS, min(_MAX_BLOCK_ELEMS, per_update))


def _blockwise(source: UpdateSource, block_elems: int | None, reduce: BlockReducer) -> Weights:
    """Apply ``reduce`` to (coordinates x updates) blocks of every tensor.

    The block is laid out with one row per coordinate, so each
    coordinate's values are contiguous for ``partition``; ``reduce`` may
    reorder it in place.
    """
    count = len(source)
    block = default_block_elems(count) if block_elems is None else int(block_elems)
    if block < 1:
        raise AggregationError(f"block_elems must be at least 1, got {block_elems}")
    buffer = np.empty((block, count), dtype=np.float32)
    result: Weights = {}
    for name in source.names():
        shape = source.shape(name)
        size = math.prod(shape)
        out = np.empty(size, dtype=np.float32)
        for start in range(0, size, block):
            stop = min(start + block, size)
            rows = buffer[: stop - start]
            for index in range(count):
                values = source.read(index, name, start, stop)
                if values.shape != (stop - start,):
                    raise AggregationError(
                        f"update {index}: {name}[{start}:{stop}] read {values.shape[0]} values"
                    )
                rows[:, index] = values
            if not np.isfinite(rows).all():
                bad = int(np.nonzero(~np.isfinite(rows).all(axis=0))[0][0])
                raise AggregationError(f"update {bad}: {name} has non-finite values")
            out[start:stop] = reduce(rows)
        result[name] = out.reshape(shape)
    return result
