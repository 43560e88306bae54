"""The batch kernel (``add_weighted``) with numbers a reader can check by
hand, and against the one-update-at-a-time float64 arithmetic it replaces.

Sizes straddle the block (``block_elems``): shorter than one block, one
block and a few, several blocks and an odd tail.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from fedge.server.aggregation.blocked import GROUP_ROWS, add_weighted, block_elems, group_rows
from fedge.server.aggregation.kernels import AggregationError, StreamingMean


def _odd_sizes(count: int) -> list[int]:
    step = block_elems(count)
    return [1, 5, step, step + 3, 3 * step - 7]


@pytest.mark.parametrize("fresh", [True, False])
@pytest.mark.parametrize("check", [True, False])
def test_a_hand_computed_batch(fresh: bool, check: bool) -> None:
    # 2 * [1, 2, 3] + 0.5 * [10, 20, 30] + 1 * [-1, 0, 1] = [6, 14, 22]
    flats = [np.array(v, dtype=np.float32) for v in ([1, 2, 3], [10, 20, 30], [-1, 0, 1])]
    total = None if fresh else np.array([100.0, 200.0, 300.0])
    out = add_weighted(total, flats, [2.0, 0.5, 1.0], name="w", check_finite=check)
    expected = [6.0, 14.0, 22.0] if fresh else [106.0, 214.0, 322.0]
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.float64


@pytest.mark.parametrize("count", [2, 3, 50, 130])
def test_odd_sizes_across_blocks_by_hand(count: int) -> None:
    """Update k is the constant k + 1 plus the ramp 0, 1, 2, ...; with weight
    k + 1, element i of the sum is sum((k + 1) ** 2) + i * sum(k + 1)."""
    for size in _odd_sizes(count):
        ramp = np.arange(size, dtype=np.float32)
        flats = [ramp + np.float32(k + 1) for k in range(count)]
        weights = [float(k + 1) for k in range(count)]
        out = add_weighted(None, flats, weights, name="w", check_finite=True)
        squares = sum((k + 1) ** 2 for k in range(count))
        expected = squares + np.arange(size, dtype=np.float64) * sum(weights)
        np.testing.assert_array_equal(out, expected)


def test_zero_weights_add_nothing_but_nan_is_still_refused() -> None:
    size = block_elems(3) + 5
    a, b, c = (np.full(size, v, dtype=np.float32) for v in (1.5, 1e30, -2.0))
    out = add_weighted(None, [a, b, c], [4.0, 0.0, 1.0], name="w", check_finite=True)
    np.testing.assert_array_equal(out, np.full(size, 4.0))  # 4 * 1.5 + 0 + 1 * -2

    b[size - 2] = np.nan  # NaN * 0 is NaN: a zero weight does not hide it
    with pytest.raises(AggregationError, match="update 1: w has non-finite"):
        add_weighted(None, [a, b, c], [4.0, 0.0, 1.0], name="w", check_finite=True)
    b[size - 2] = np.inf  # inf * 0 is NaN too
    with pytest.raises(AggregationError, match="update 1: w has non-finite"):
        add_weighted(None, [a, b, c], [4.0, 0.0, 1.0], name="w", check_finite=True)


def _one_by_one(
    total: npt.NDArray[np.float64], flats: list[npt.NDArray[np.float32]], weights: list[float]
) -> npt.NDArray[np.float64]:
    """The arithmetic of ``StreamingMean.add``: ``total += w * float64(x)``."""
    total = total.copy()
    for flat, weight in zip(flats, weights, strict=True):
        total += weight * flat.astype(np.float64)
    return total


@pytest.mark.parametrize("count", [2, 7, 50, 130])
def test_equals_one_update_at_a_time_to_1e12(count: int) -> None:
    rng = np.random.default_rng(count)
    for size in _odd_sizes(count):
        flats = [rng.standard_normal(size, dtype=np.float32) for _ in range(count)]
        weights = [float(w) for w in rng.integers(1, 1000, size=count)]
        start = rng.standard_normal(size) * 10
        # The rounding differs only in the order of the additions: each is
        # within count * 2**-52 of the exact sum of magnitudes.
        magnitude = sum(w * np.abs(f) for f, w in zip(flats, weights, strict=True))
        bound = 1e-12 * (np.abs(start) + magnitude)
        for total in (None, start.copy()):
            old = _one_by_one(np.zeros(size) if total is None else start, flats, weights)
            new = add_weighted(total, flats, weights, name="w", check_finite=False)
            assert np.all(np.abs(new - old) <= bound)


def test_several_tensors_in_one_batch_equal_the_reference() -> None:
    rng = np.random.default_rng(4)
    step = block_elems(5)
    shapes = {"conv/kernel": (3, step + 1), "dense/kernel": (7, 11), "dense/bias": (1,)}
    updates = [
        {name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}
        for _ in range(5)
    ]
    weights = [3.0, 1.0, 4.0, 1.0, 5.0]
    mean = StreamingMean()
    mean.add_many(updates, weights)

    result = mean.result()
    assert list(result) == list(shapes) and mean.count == 5 and mean.total_weight == 14.0
    for name, shape in shapes.items():
        stacked = np.stack([u[name].astype(np.float64) for u in updates])
        expected = np.tensordot(np.array(weights), stacked, axes=1) / 14.0
        assert result[name].shape == shape
        np.testing.assert_array_equal(result[name], expected.astype(np.float32))


@pytest.mark.parametrize("fresh", [True, False])
def test_nan_in_the_middle_of_a_batch_is_refused_and_nothing_is_added(fresh: bool) -> None:
    step = block_elems(5)
    size = 3 * step + 1
    rng = np.random.default_rng(8)
    updates = [
        {"a": rng.standard_normal(size, dtype=np.float32), "b": np.ones(4, np.float32)}
        for _ in range(5)
    ]
    updates[2]["a"][step + 17] = np.nan  # the middle update, the middle block
    mean = StreamingMean()
    if not fresh:
        mean.add({"a": np.ones(size, np.float32), "b": np.ones(4, np.float32)}, 2.0)

    with pytest.raises(AggregationError, match=rf"update 2: a has non-finite .*{step}"):
        mean.add_many(updates, [1.0] * 5)

    if fresh:
        assert mean.count == 0 and mean.spec is None
        with pytest.raises(AggregationError, match="no updates"):
            mean.result()
    else:
        assert mean.count == 1 and mean.total_weight == 2.0
        np.testing.assert_array_equal(mean.result()["a"], np.ones(size, np.float32))
    updates[2]["a"][step + 17] = 0.5  # the same batch, fixed, is then added
    mean.add_many(updates, [1.0] * 5)
    assert mean.count == (5 if fresh else 6)


def test_more_updates_than_one_product_takes_are_reduced_in_groups() -> None:
    count = 3 * GROUP_ROWS + 1  # four groups
    assert group_rows(count) < GROUP_ROWS
    size = block_elems(count) + 9
    flats = [np.full(size, 2.0, np.float32) for _ in range(count)]
    weights = [1.0] * count
    np.testing.assert_array_equal(
        add_weighted(None, flats, weights, name="w", check_finite=True), np.full(size, 2.0 * count)
    )
    flats[count - 2][size - 1] = -np.inf  # in the last group and the last block
    with pytest.raises(AggregationError, match=f"update {count - 2}: w has non-finite"):
        add_weighted(None, flats, weights, name="w", check_finite=True)


def test_a_batch_of_the_wrong_length_is_refused() -> None:
    flats = [np.ones(3, np.float32), np.ones(4, np.float32)]
    with pytest.raises(AggregationError, match="update 1: w has 4 values, not 3"):
        add_weighted(None, flats, [1.0, 1.0], name="w", check_finite=True)
    with pytest.raises(AggregationError, match="no updates"):
        add_weighted(None, [], [], name="w", check_finite=True)


def test_any_block_shape_gives_the_same_sum() -> None:
    # 1 * [1..7] + 2 * [10..70] + 3 * [100..700]: element i is 321 * (i + 1)
    flats = [np.arange(1, 8, dtype=np.float32) * scale for scale in (1, 10, 100)]
    expected = 321.0 * np.arange(1, 8)
    for shape in (None, (1, 1), (2, 3), (3, 7), (5, 100)):
        out = add_weighted(None, flats, [1.0, 2.0, 3.0], name="w", check_finite=True, shape=shape)
        np.testing.assert_array_equal(out, expected)
    with pytest.raises(AggregationError, match="positive sizes"):
        add_weighted(None, flats, [1.0, 2.0, 3.0], name="w", check_finite=True, shape=(0, 4))
