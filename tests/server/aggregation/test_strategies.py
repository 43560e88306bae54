"""Strategies: one or two rounds worked out by hand; DP noise statistically."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from fedge.errors import ConfigError
from fedge.server.aggregation.central_dp import CentralDP
from fedge.server.aggregation.factory import make_strategy
from fedge.server.aggregation.kernels import AggregationError, InMemoryUpdates, StreamingMean
from fedge.server.aggregation.strategies import (
    STRATEGIES,
    FedAdam,
    FedAvg,
    FedAvgM,
    Median,
    ServerState,
    Strategy,
    TrimmedMean,
)
from fedge.wire.update_codec import Weights, global_norm


def f32(*values: float) -> npt.NDArray[np.float32]:
    return np.array(values, dtype=np.float32)


def streamed(
    updates: Sequence[Mapping[str, npt.NDArray[Any]]], weights: Sequence[float]
) -> StreamingMean:
    mean = StreamingMean()
    for update, weight in zip(updates, weights, strict=True):
        mean.add(update, weight)
    return mean


def prepared_mean(strategy: Strategy, updates: Sequence[Weights], examples: int) -> StreamingMean:
    """What the server streams: the updates as the strategy prepares them."""
    mean = StreamingMean()
    for update in updates:
        prepared = strategy.prepare(update, examples)
        mean.add(prepared.delta, prepared.weight)
    return mean


def test_fedavg_steps_by_the_weighted_mean_times_the_server_lr() -> None:
    mean = streamed([{"w": f32(0, 4)}, {"w": f32(4, 0)}], [1, 3])  # mean [3, 1]

    result = FedAvg(server_lr=0.5).next_weights({"w": f32(1, 1)}, ServerState(), mean)

    np.testing.assert_array_equal(result.new_weights["w"], f32(2.5, 1.5))  # 1 + 0.5*[3, 1]
    assert result.state.round == 1
    assert result.metrics["num_updates"] == 2
    assert result.metrics["total_weight"] == 4
    assert result.metrics["step_norm"] == pytest.approx(np.hypot(1.5, 0.5))


def test_fedavgm_accumulates_momentum_over_two_rounds() -> None:
    # No warm-up and no trust region: the momentum alone, worked out by hand.
    strategy = FedAvgM(server_lr=1.0, momentum=0.5, warmup_rounds=0, max_step_ratio=None)

    first = strategy.next_weights({"w": f32(0)}, ServerState(), streamed([{"w": f32(2)}], [1]))
    second = strategy.next_weights(first.new_weights, first.state, streamed([{"w": f32(2)}], [1]))

    # round 1: v = 0.5*0 + 2 = 2, w = 0 + 2 = 2; round 2: v = 0.5*2 + 2 = 3, w = 2 + 3 = 5
    np.testing.assert_array_equal(first.new_weights["w"], f32(2))
    np.testing.assert_array_equal(second.new_weights["w"], f32(5))
    np.testing.assert_array_equal(second.state.slots["momentum"]["w"], f32(3))
    assert second.state.round == 2


def test_fedadam_one_step_by_hand() -> None:
    strategy = FedAdam(
        server_lr=1.0, beta1=0.5, beta2=0.5, tau=2.0, warmup_rounds=0, max_step_ratio=None
    )

    result = strategy.next_weights(
        {"w": f32(0, 0)}, ServerState(), streamed([{"w": f32(2, 0)}], [1])
    )

    # m = 0.5*0 + 0.5*[2, 0] = [1, 0]; v starts at tau^2 = 4: v = 0.5*4 + 0.5*[4, 0] = [4, 2]
    # step = m / (sqrt(v) + tau) = [1 / (2 + 2), 0] = [0.25, 0]
    np.testing.assert_array_equal(result.new_weights["w"], f32(0.25, 0))
    np.testing.assert_array_equal(result.state.slots["m"]["w"], f32(1, 0))
    np.testing.assert_array_equal(result.state.slots["v"]["w"], f32(4, 2))


def test_fedadam_s_default_step_is_no_longer_than_the_mean_delta() -> None:
    """Fine-tuning: FedAdam's first step moves every weight by about
    server_lr, whatever the devices did; even at the warm-up's 1/3 it is
    longer than the mean delta, so the trust region caps it there."""
    weights = {"w": np.zeros(1000, np.float32)}
    delta = {"w": np.full(1000, 1e-2, np.float32)}  # norm 0.316

    plain = FedAdam(warmup_rounds=0, max_step_ratio=None).next_weights(
        weights, ServerState(), streamed([delta], [1])
    )
    bounded = FedAdam().next_weights(weights, ServerState(), streamed([delta], [1]))

    # 0.1 * m / (sqrt(v) + tau) = 0.1 * 1e-3 / (sqrt(0.99e-6 + 1e-6) + 1e-3) = 0.041 a weight
    assert plain.metrics["step_norm"] > 4 * global_norm(delta)
    assert bounded.metrics["step_norm"] == pytest.approx(global_norm(delta), rel=1e-5)
    # Adam's direction (here the mean delta's) is kept inside the bound.
    np.testing.assert_allclose(bounded.new_weights["w"], delta["w"], rtol=1e-5)


def test_fedavgm_warms_up_then_caps_its_step_at_the_mean_delta() -> None:
    strategy = FedAvgM(server_lr=1.0, momentum=0.5, warmup_rounds=1, max_step_ratio=1.2)
    w, state = {"w": f32(0)}, ServerState()
    steps = []
    for _ in range(3):
        result = strategy.next_weights(w, state, streamed([{"w": f32(2)}], [1]))
        steps.append(float(result.new_weights["w"][0] - w["w"][0]))
        w, state = result.new_weights, result.state

    # v = 2, 3, 3.5; round 0 at half the step (warm-up), then at most 1.2 * 2.
    assert steps == pytest.approx([1.0, 2.4, 2.4])
    np.testing.assert_array_equal(state.slots["momentum"]["w"], f32(3.5))


def test_trust_region_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="warmup_rounds must be >= 0"):
        make_strategy("fedavgm", warmup_rounds=-1)
    with pytest.raises(ConfigError, match="max_step_ratio must be > 0"):
        make_strategy("fedadam", max_step_ratio="0")
    assert make_strategy("fedadam", warmup_rounds="0") == FedAdam(warmup_rounds=0)


def test_median_and_trimmed_mean_strategies_read_the_stored_updates() -> None:
    source = InMemoryUpdates([{"w": f32(1, 10)}, {"w": f32(2, -5)}, {"w": f32(100, 0)}])
    global_weights = {"w": f32(10, 10)}

    median = Median().next_weights(global_weights, ServerState(), None, source)
    trimmed = TrimmedMean(trim_fraction=0.34).next_weights(
        global_weights, ServerState(), None, source
    )

    assert Median.needs_stored_updates and not FedAvg.needs_stored_updates
    np.testing.assert_array_equal(median.new_weights["w"], f32(12, 10))  # median [2, 0]
    np.testing.assert_array_equal(trimmed.new_weights["w"], f32(12, 10))  # 1 of 3 cut per end


def test_strategies_refuse_the_wrong_inputs() -> None:
    with pytest.raises(AggregationError, match="streamed mean"):
        FedAvg().next_weights({"w": f32(0)}, ServerState(), StreamingMean())
    with pytest.raises(AggregationError, match="stored updates"):
        Median().next_weights({"w": f32(0)}, ServerState(), streamed([{"w": f32(1)}], [1]))
    with pytest.raises(AggregationError, match="shape"):
        FedAvg().next_weights({"w": f32(0, 0)}, ServerState(), streamed([{"w": f32(1)}], [1]))


def test_inputs_are_not_mutated() -> None:
    global_weights = {"w": f32(1, 2)}
    state = (
        FedAdam()
        .next_weights(global_weights, ServerState(), streamed([{"w": f32(1, 1)}], [1]))
        .state
    )
    before_weights, before_state = copy.deepcopy(global_weights), copy.deepcopy(state)
    update = {"w": f32(30, 40)}
    params: dict[str, Any] = {"server_lr": "0.5"}
    dp: dict[str, Any] = {"clip_norm": 1.0, "noise_multiplier": 0.0}

    FedAdam().next_weights(global_weights, state, streamed([update], [2]))
    strategy = make_strategy("fedavg", dp=dp, **params)
    strategy.prepare(update, 5)

    np.testing.assert_array_equal(global_weights["w"], before_weights["w"])
    for slot, weights in before_state.slots.items():
        np.testing.assert_array_equal(state.slots[slot]["w"], weights["w"])
    np.testing.assert_array_equal(update["w"], f32(30, 40))
    assert params == {"server_lr": "0.5"}
    assert dp == {"clip_norm": 1.0, "noise_multiplier": 0.0}


def test_state_round_trips_through_flat_tensors() -> None:
    state = ServerState(round=3, slots={"m": {"conv/kernel": f32(1)}, "v": {"conv/kernel": f32(2)}})

    flat = state.to_tensors()
    back = ServerState.from_tensors(3, flat)

    assert list(flat) == ["m/conv/kernel", "v/conv/kernel"]
    assert back.round == 3
    np.testing.assert_array_equal(back.slots["v"]["conv/kernel"], f32(2))


# -- central DP ----------------------------------------------------------------------


def test_dp_prepare_clips_to_the_bound_with_unit_weight() -> None:
    strategy = CentralDP(FedAvg(), clip_norm=6.5, noise_multiplier=1.0, seed=0)

    prepared = strategy.prepare({"a": f32(3, 4), "b": f32(12)}, num_examples=50)  # norm 13

    assert prepared.weight == 1.0
    assert prepared.clipped
    assert prepared.norm == 13.0
    assert global_norm(prepared.delta) == pytest.approx(6.5)
    assert not strategy.prepare({"a": f32(3, 4)}, num_examples=50).clipped


def test_dp_noise_std_is_noise_multiplier_times_clip_over_n() -> None:
    strategy = CentralDP(FedAvg(), clip_norm=2.0, noise_multiplier=1.0, seed=7)
    zeros = {"w": np.zeros(200_000, np.float32)}
    mean = prepared_mean(strategy, [zeros] * 4, examples=10)

    result = strategy.next_weights(zeros, ServerState(), mean)

    noise = result.new_weights["w"]  # zero weights + zero mean: only the noise is left
    # 1.0 * 2.0 / 4 = 0.5; 200k samples estimate a std to about 0.2%
    assert result.metrics["dp_noise_std"] == 0.5
    assert noise.std() == pytest.approx(0.5, rel=0.01)
    assert abs(noise.mean()) < 0.01


def test_dp_with_a_fixed_denominator() -> None:
    strategy = CentralDP(
        FedAvg(), clip_norm=2.0, noise_multiplier=1.0, seed=1, clients_per_round=10
    )
    updates = [{"w": np.full(100_000, 0.001, np.float32)}] * 4
    mean = prepared_mean(strategy, updates, examples=10)

    result = strategy.next_weights({"w": np.zeros(100_000, np.float32)}, ServerState(), mean)

    # sum of 4 updates of 0.001 over 10 = 0.0004 on average; noise std 1*2/10 = 0.2
    assert result.new_weights["w"].mean() == pytest.approx(0.0004, abs=0.002)
    assert result.new_weights["w"].std() == pytest.approx(0.2, rel=0.02)
    assert strategy.noise_std(count=4) == pytest.approx(0.2)


def test_dp_noise_is_reproducible_per_seed_and_round() -> None:
    strategy = CentralDP(FedAvg(), clip_norm=1.0, noise_multiplier=1.0, seed=42)
    zeros = {"w": np.zeros(16, np.float32)}

    def noise(round_: int, chosen: Strategy) -> npt.NDArray[Any]:
        mean = prepared_mean(chosen, [zeros], examples=1)
        return chosen.next_weights(zeros, ServerState(round=round_), mean).new_weights["w"]

    np.testing.assert_array_equal(noise(3, strategy), noise(3, strategy))
    assert not np.array_equal(noise(3, strategy), noise(4, strategy))
    other_seed = CentralDP(FedAvg(), clip_norm=1.0, noise_multiplier=1.0, seed=43)
    assert not np.array_equal(noise(3, strategy), noise(3, other_seed))


def test_dp_refuses_weighted_or_unclipped_means_and_robust_inner_strategies() -> None:
    strategy = CentralDP(FedAvg(), clip_norm=1.0, noise_multiplier=1.0, seed=0)
    zeros = {"w": f32(0, 0)}

    with pytest.raises(AggregationError, match="unit weights"):
        strategy.next_weights(zeros, ServerState(), streamed([{"w": f32(0.1, 0)}], [5]))
    with pytest.raises(AggregationError, match="not clipped"):
        strategy.next_weights(zeros, ServerState(), streamed([{"w": f32(3, 4)}], [1]))
    with pytest.raises(ConfigError, match="median"):
        CentralDP(Median(), clip_norm=1.0, noise_multiplier=1.0)


def test_dp_wraps_the_inner_server_optimizer() -> None:
    strategy = CentralDP(
        FedAvgM(momentum=0.5, warmup_rounds=0), clip_norm=10.0, noise_multiplier=0.0
    )
    mean = prepared_mean(strategy, [{"w": f32(2)}], examples=3)

    result = strategy.next_weights({"w": f32(0)}, ServerState(), mean)

    np.testing.assert_array_equal(result.new_weights["w"], f32(2))
    np.testing.assert_array_equal(result.state.slots["momentum"]["w"], f32(2))


def test_each_strategy_names_the_stages_of_an_accepted_update() -> None:
    """The server asks the strategy for its stages; it never checks which
    strategy it holds."""
    for name in STRATEGIES:
        plain = make_strategy(name)
        assert [stage.name for stage in plain.update_stages(example_cap=10)] == ["weigh"]
        assert plain.weighing(example_cap=10).weight_of(50) == 10.0
        assert plain.weighing().weight_of(50) == 50.0
    private = CentralDP(FedAvg(), clip_norm=1.0, noise_multiplier=1.0)
    assert [stage.name for stage in private.update_stages(example_cap=10)] == ["dp_clip", "weigh"]
    assert private.weighing(example_cap=10).weight_of(50) == 1.0


# -- make_strategy -------------------------------------------------------------------


def test_make_strategy_builds_each_named_strategy() -> None:
    assert make_strategy("fedavg") == FedAvg()
    assert make_strategy("FedAvgM", momentum="0.5") == FedAvgM(momentum=0.5)
    assert make_strategy("fedadam", tau=0.01) == FedAdam(tau=0.01)
    assert make_strategy("median") == Median()
    assert make_strategy("trimmed_mean", trim_fraction=0.2) == TrimmedMean(trim_fraction=0.2)
    dp = make_strategy("fedavg", dp={"clip_norm": "1.5", "noise_multiplier": 1, "seed": "3"})
    assert dp == CentralDP(FedAvg(), clip_norm=1.5, noise_multiplier=1.0, seed=3)


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("fedsgd", {}, "unknown strategy 'fedsgd'; choose one of fedavg, fedavgm"),
        ("fedavg", {"lr": 1.0}, r"unknown parameters \['lr'\]; accepted: \['server_lr'\]"),
        ("fedavgm", {"momentum": 1.5}, "momentum must be in"),
        ("fedadam", {"tau": "abc"}, "tau must be a number"),
        ("trimmed_mean", {"trim_fraction": 0.5}, "trim_fraction must be in"),
        ("fedavg", {"dp": {"clip_norm": 1.0}}, "noise_multiplier"),
        (
            "fedavg",
            {"dp": {"clip": 1.0, "noise_multiplier": 1.0}},
            r"unknown parameters \['clip'\]",
        ),
        ("median", {"dp": {"clip_norm": 1.0, "noise_multiplier": 1.0}}, "cannot wrap median"),
    ],
)
def test_make_strategy_reports_bad_configs(name: str, params: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_strategy(name, **params)
