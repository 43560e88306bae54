"""The share cap, taking weight back out of a streamed mean, and the
median norm bound: hand-checkable numbers, no server."""

from __future__ import annotations

import numpy as np
import pytest

from fedge.server.aggregation.errors import AggregationError
from fedge.server.aggregation.influence import max_share, median_norm_bound, share_capped_weights
from fedge.server.aggregation.kernels import StreamingMean


def shares(weights: list[float]) -> list[float]:
    total = sum(weights)
    return [w / total for w in weights]


def test_the_share_cap_is_two_equal_shares_and_never_below_one() -> None:
    assert max_share(10, 2.0) == 0.2
    assert max_share(4, 2.0) == 0.5
    assert max_share(1, 2.0) == 1.0  # a lone update holds the round
    with pytest.raises(AggregationError):
        max_share(4, 0.5)  # equal shares would not fit


def test_weights_under_the_cap_are_unchanged() -> None:
    assert share_capped_weights([100, 100, 1, 1], 0.5) == [100, 100, 1, 1]


def test_one_large_weight_is_cut_to_the_cap_of_the_new_total() -> None:
    # t = 0.5 * 30 / (1 - 0.5) = 30: 30 of 60 is half.
    capped = share_capped_weights([1000, 10, 10, 10], 0.5)

    assert capped == [30, 10, 10, 10]
    assert max(shares(capped)) == 0.5


def test_several_large_weights_are_cut_to_one_level() -> None:
    # Cap 1/3 of 6 updates: two cut to t = (1/3) * 40 / (1/3) = 40.
    capped = share_capped_weights([1000, 10, 1000, 10, 10, 10], 1 / 3)

    assert capped == pytest.approx([40, 10, 40, 10, 10, 10])
    assert max(shares(capped)) == pytest.approx(1 / 3)


def test_a_cap_of_one_equal_share_makes_every_weight_equal() -> None:
    assert share_capped_weights([100, 1, 1, 1], 0.25) == [1, 1, 1, 1]
    assert share_capped_weights([7, 7, 7], 1 / 3) == [7, 7, 7]


@pytest.mark.parametrize(
    ("weights", "cap"), [([1, 1, 1], 0.2), ([1, 0, 1], 0.5), ([1, float("inf")], 1.0)]
)
def test_an_impossible_cap_or_a_bad_weight_is_an_error(weights: list[float], cap: float) -> None:
    with pytest.raises(AggregationError):
        share_capped_weights(weights, cap)


def test_weight_taken_back_leaves_the_mean_of_the_smaller_weight() -> None:
    mean = StreamingMean()
    mean.add({"w": np.array([1.0, 1.0], np.float32)}, 1.0)
    mean.add({"w": np.array([9.0, 9.0], np.float32)}, 100.0)
    before = mean.copy()

    mean.take_back({"w": np.array([9.0, 9.0], np.float32)}, 90.0)

    # As if added with weight 10: (1 + 10 * 9) / 11.
    np.testing.assert_allclose(mean.result()["w"], [91 / 11, 91 / 11], rtol=1e-6)
    assert (mean.count, mean.total_weight) == (2, 11.0)
    # The copy is independent: the first mean is unchanged.
    np.testing.assert_allclose(before.result()["w"], [901 / 101, 901 / 101], rtol=1e-6)
    with pytest.raises(AggregationError):
        mean.take_back({"w": np.array([1.0, 1.0], np.float32)}, 11.0)  # all of it


def test_the_norm_bound_is_a_multiple_of_the_median_that_outliers_do_not_move() -> None:
    honest = [0.12, 0.15, 0.18, 0.14, 0.16]

    assert median_norm_bound(honest, 1.0) == pytest.approx(0.15)
    # Two huge updates of seven leave the median at an honest norm.
    assert median_norm_bound([*honest, 1760.9, 1760.9], 2.0) == pytest.approx(0.32)
    assert median_norm_bound([0.1, 0.2], 1.0) is None  # too few: the fallback
    assert median_norm_bound([0.0, 0.0, 0.0], 1.0) is None
