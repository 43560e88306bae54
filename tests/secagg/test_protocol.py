"""The protocol end to end in process: exact sums, dropouts at each stage,
failure beyond the threshold."""

from __future__ import annotations

import numpy as np
import pytest

from fedge.secagg import SecAggParams, TooFewSurvivors
from fedge.secagg.quantise import quantisation_error
from tests.secagg.protocol import plain_sum, play


def test_the_unmasked_sum_is_the_exact_integer_sum_of_the_quantised_inputs() -> None:
    played = play(6)

    np.testing.assert_array_equal(played.result.total, plain_sum(played, sorted(played.inputs)))
    assert played.result.count == 6


def test_the_decoded_sum_is_the_sum_of_the_clipped_inputs_within_the_quantisation_error() -> None:
    played = play(5, clip=0.5)

    clipped = sum(np.clip(x, -0.5, 0.5) for x in played.inputs.values())
    error = np.abs(played.result.values - clipped).max()
    assert error <= quantisation_error(5, played.result.params) + 1e-12


def test_a_sparse_graph_round_sums_exactly() -> None:
    played = play(40, length=20, dropout=0.2)

    params = played.result.params
    assert params.neighbours < params.devices - 1  # sparse, not complete
    np.testing.assert_array_equal(played.result.total, plain_sum(played, sorted(played.inputs)))


@pytest.mark.parametrize(
    "stage", ["before_sharing", "after_sharing", "after_upload"], ids=lambda s: s
)
def test_dropouts_up_to_the_declared_fraction_leave_the_survivors_sum(stage: str) -> None:
    # 10 devices, complete graph k = 9, dropout 0.3: t = 7, two may drop.
    dropped = frozenset({2, 5})
    played = play(
        10,
        dropout=0.3,
        before_sharing=dropped if stage == "before_sharing" else frozenset(),
        after_sharing=dropped if stage == "after_sharing" else frozenset(),
        after_upload=dropped if stage == "after_upload" else frozenset(),
    )

    ids = sorted(played.inputs)
    uploaded = ids if stage == "after_upload" else [d for i, d in enumerate(ids) if i not in {2, 5}]
    np.testing.assert_array_equal(played.result.total, plain_sum(played, uploaded))
    assert played.result.count == len(uploaded)


def test_dropouts_at_every_stage_together_in_a_sparse_graph() -> None:
    played = play(
        30,
        length=10,
        dropout=0.3,
        before_sharing=frozenset({1}),
        after_sharing=frozenset({8}),
        after_upload=frozenset({20}),
    )

    ids = sorted(played.inputs)
    uploaded = [d for i, d in enumerate(ids) if i not in {1, 8}]
    np.testing.assert_array_equal(played.result.total, plain_sum(played, uploaded))


def test_beyond_the_threshold_the_round_fails_cleanly() -> None:
    # k = 4, t = 3 for 5 devices: three silent at unmasking leave two shares.
    with pytest.raises(TooFewSurvivors, match="needed"):
        play(5, dropout=0.2, after_upload=frozenset({0, 1, 2}))


def test_params_follow_from_the_round_size_and_the_declared_dropout() -> None:
    small = SecAggParams.choose(10, 0.3, 100, 1.0)
    large = SecAggParams.choose(1000, 0.3, 100, 1.0)

    assert (small.neighbours, small.threshold, small.bits) == (9, 7, 24)
    assert large.neighbours == 30 and large.threshold == 21 and large.bits == 22
    assert large.threshold > large.neighbours // 2
    assert large.devices * large.levels < 1 << 32  # the sum never wraps


def test_the_sparse_graph_is_symmetric_with_exactly_k_neighbours_each() -> None:
    from fedge.secagg.graph import neighbours_of, neighbours_of_one

    ids = [f"d{i}" for i in range(25)]
    graph = neighbours_of(ids, b"s" * 32, 8)

    assert all(len(others) == 8 and d not in others for d, others in graph.items())
    assert all(d in graph[v] for d, others in graph.items() for v in others)
    assert all(neighbours_of_one(ids, b"s" * 32, 8, d) == graph[d] for d in ids)
    assert neighbours_of(ids, b"t" * 32, 8) != graph  # the seed shuffles the ring
