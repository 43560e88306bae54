"""The batch and selection kernels against straightforward float64 references.

Sizes are chosen to be awkward for the blocks: not a multiple of the block,
shorter than one block, one update, many updates.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from fedge.server.aggregation.blocked import add_weighted, block_elems
from fedge.server.aggregation.kernels import (
    AggregationError,
    InMemoryUpdates,
    StreamingMean,
    coordinate_median,
    trimmed_mean,
)

SIZES = [1, 7, block_elems(3) + 5, 3 * block_elems(40) - 1]


def _updates(count: int, size: int, seed: int) -> list[dict[str, npt.NDArray[np.float32]]]:
    rng = np.random.default_rng(seed)
    return [
        {
            "a": rng.standard_normal(size, dtype=np.float32),
            "b": (rng.standard_normal((2, 3)) * 1e3).astype(np.float32),
        }
        for _ in range(count)
    ]


def _reference_mean(
    updates: list[dict[str, npt.NDArray[np.float32]]], weights: list[float]
) -> dict[str, npt.NDArray[np.float64]]:
    total = sum(weights)
    return {
        name: sum(w * u[name].astype(np.float64) for u, w in zip(updates, weights, strict=True))
        / total  # type: ignore[misc]
        for name in updates[0]
    }


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("count", [2, 3, 40])
def test_add_many_equals_a_float64_reference(size: int, count: int) -> None:
    updates = _updates(count, size, seed=size + count)
    weights = [float(w) for w in np.random.default_rng(count).integers(1, 100, size=count)]
    mean = StreamingMean()
    mean.add(updates[0], 2.5)  # an existing sum that the batch adds to
    mean.add_many(updates, weights)

    expected = _reference_mean([updates[0], *updates], [2.5, *weights])
    result = mean.result()
    assert mean.count == count + 1
    assert mean.total_weight == pytest.approx(2.5 + sum(weights))
    for name, value in expected.items():
        np.testing.assert_allclose(result[name], value, rtol=2e-7, atol=1e-7)
        assert result[name].dtype == np.float32


@pytest.mark.parametrize("check", [True, False])
def test_add_weighted_keeps_float64_products_and_sums(check: bool) -> None:
    """A finite float32 near its maximum times a weight above one is finite
    in float64: the batch must not overflow where one-by-one adds do not."""
    size = block_elems(2) + 3
    big = np.full(size, 3.0e38, dtype=np.float32)
    total = np.zeros(size, dtype=np.float64)
    out = add_weighted(total, [big, -big, big], [4.0, 1.0, 1.0], name="w", check_finite=check)
    np.testing.assert_array_equal(out, np.full(size, 4 * float(big[0])))


def test_one_update_batch_is_an_add() -> None:
    updates = _updates(1, SIZES[2], seed=3)
    batch, single = StreamingMean(), StreamingMean()
    batch.add_many(updates, [3.0])
    single.add(updates[0], 3.0)
    for name, value in single.result().items():
        np.testing.assert_array_equal(batch.result()[name], value)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_batch_with_a_non_finite_update_is_refused_and_changes_nothing(bad: float) -> None:
    size = 2 * block_elems(4) + 11
    updates = _updates(4, size, seed=9)
    updates[2]["a"][size - 3] = bad  # in the last block: earlier blocks were summed
    mean = StreamingMean()
    mean.add(updates[0], 1.0)
    before = {name: value.copy() for name, value in mean.result().items()}

    with pytest.raises(AggregationError, match="update 2: a has non-finite"):
        mean.add_many(updates, [1.0, 2.0, 3.0, 4.0])

    assert mean.count == 1 and mean.total_weight == 1.0
    for name, value in before.items():
        np.testing.assert_array_equal(mean.result()[name], value)


def test_a_batch_with_a_bad_weight_or_shape_is_refused_and_changes_nothing() -> None:
    updates = _updates(3, 10, seed=1)
    mean = StreamingMean()
    mean.add(updates[0], 1.0)
    with pytest.raises(AggregationError, match="weight"):
        mean.add_many(updates, [1.0, 0.0, 1.0])
    with pytest.raises(AggregationError, match="2 weights for 3 updates"):
        mean.add_many(updates, [1.0, 1.0])
    wrong = [*updates[:2], {"a": np.zeros(11, np.float32), "b": updates[0]["b"]}]
    with pytest.raises(AggregationError, match="update 2"):
        mean.add_many(wrong, [1.0, 1.0, 1.0])
    assert mean.count == 1
    np.testing.assert_array_equal(mean.result()["a"], updates[0]["a"])


# -- median and trimmed mean by sorting blocks -------------------------------------


def _adversarial(count: int, size: int, seed: int) -> list[dict[str, npt.NDArray[np.float32]]]:
    """Random values, many exact ties, signed zeros and extremes."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        a = rng.integers(-2, 3, size=size).astype(np.float32)  # ties everywhere
        a[::5] = rng.standard_normal(a[::5].size).astype(np.float32)
        a[1::7] = -0.0
        a[2::11] = np.float32(3.0e38) * rng.choice([-1, 1])
        out.append({"a": a})
    return out


@pytest.mark.parametrize("count", [1, 2, 5, 50, 51])
@pytest.mark.parametrize("block", [None, 3, 1000])
def test_median_equals_numpy_median(count: int, block: int | None) -> None:
    for updates in (_updates(count, 1001, seed=count), _adversarial(count, 1001, seed=count)):
        result = coordinate_median(InMemoryUpdates(updates), block_elems=block)
        for name in updates[0]:
            stacked = np.stack([u[name].astype(np.float64) for u in updates])
            expected = np.median(stacked, axis=0)
            np.testing.assert_array_equal(result[name], expected.astype(np.float32))


@pytest.mark.parametrize("count", [1, 2, 5, 50, 51])
@pytest.mark.parametrize("trim", [0.0, 0.1, 0.2, 0.49])
def test_trimmed_mean_equals_a_sorted_float64_reference(count: int, trim: float) -> None:
    for updates in (_updates(count, 1001, seed=count), _adversarial(count, 1001, seed=count)):
        result = trimmed_mean(InMemoryUpdates(updates), trim, block_elems=333)
        cut = int(trim * count)
        for name in updates[0]:
            ordered = np.sort(np.stack([u[name].astype(np.float64) for u in updates]), axis=0)
            expected = ordered[cut : count - cut].sum(axis=0) / (count - 2 * cut)
            np.testing.assert_allclose(result[name], expected.astype(np.float32), rtol=1e-6)


def test_robust_aggregates_still_refuse_nan() -> None:
    updates = _updates(5, 100, seed=2)
    updates[3]["a"][50] = np.nan
    with pytest.raises(AggregationError, match="update 3: a has non-finite"):
        coordinate_median(InMemoryUpdates(updates))
    with pytest.raises(AggregationError, match="update 3: a has non-finite"):
        trimmed_mean(InMemoryUpdates(updates), 0.2)
