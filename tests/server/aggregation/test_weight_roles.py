"""A model's state in the update pipeline and the strategies: norms, clips
and noise are over trained weights only; statistics are averaged plainly
(or kept); constants keep their dtype."""

from __future__ import annotations

import numpy as np
import pytest

from fedge.server.aggregation.kernels import StreamingMean
from fedge.server.aggregation.pipeline import Bounds, Clip
from fedge.server.aggregation.roles import WeightRoles
from fedge.server.aggregation.strategies import FedAvgM, ServerState
from fedge.server.config import ServerConfig
from fedge.server.errors import ConfigurationError
from fedge.server.rounds.strategy import RoundStrategy
from fedge.wire.update_codec import Update, UpdateMeta, Weights, global_norm
from fedge.wire.weight_spec import ModelSpec, WeightSpecError

GLOBAL: Weights = {
    "norm/mean": np.array([3.0, 4.0], np.float32),
    "norm/variance": np.array([2.0, 2.0], np.float32),
    "norm/count": np.array(100, np.int64),
    "dense/kernel": np.zeros((2, 2), np.float32),
    "bn/gamma": np.ones(2, np.float32),
    "bn/moving_mean": np.zeros(2, np.float32),
    "bn/moving_variance": np.ones(2, np.float32),
}
SPEC = ModelSpec.of_weights(GLOBAL)


def _delta(scale: float) -> Weights:
    return {
        "norm/mean": np.full(2, scale, np.float32),
        "norm/variance": np.full(2, scale, np.float32),
        "norm/count": np.array(7, np.int64),
        "dense/kernel": np.full((2, 2), scale, np.float32),
        "bn/gamma": np.full(2, scale, np.float32),
        "bn/moving_mean": np.full(2, 10 * scale, np.float32),
        "bn/moving_variance": np.full(2, -0.5, np.float32),
    }


def test_the_spec_tells_constants_statistics_and_local_state_apart() -> None:
    assert SPEC.constant_names == {"norm/mean", "norm/variance", "norm/count"}
    assert SPEC.statistic_names == {"bn/moving_mean", "bn/moving_variance"}
    assert SPEC.matching(["bn"]) == {"bn/moving_mean", "bn/moving_variance"}
    assert SPEC.matching(["*/gamma"]) == {"bn/gamma"}
    with pytest.raises(WeightSpecError, match="matches no weight"):
        SPEC.matching(["conv*/kernel"])


def test_the_norm_and_the_clip_are_over_trained_weights_only() -> None:
    roles = WeightRoles.of(SPEC)
    update = Update(UpdateMeta(1, "base", 10, {}), _delta(1.0))
    candidate = Bounds(1, "base", untrained=roles.untrained).admit(update)

    assert candidate.norm == pytest.approx(global_norm(roles.trained(_delta(1.0))))
    clipped = Clip(1.0).apply(candidate).scaled_deltas()
    assert global_norm(roles.trained(clipped)) == pytest.approx(1.0, rel=1e-6)
    # The statistics are carried as sent, not scaled with the trained weights.
    np.testing.assert_array_equal(clipped["bn/moving_mean"], np.full(2, 10.0))
    assert clipped["norm/count"].dtype == np.int64


def _mean(roles: WeightRoles, deltas: list[Weights], weights: list[float]) -> StreamingMean:
    mean = StreamingMean()
    for delta, weight in zip(deltas, weights, strict=True):
        mean.add(roles.averaged(delta), weight)
    return mean


def test_statistics_are_averaged_without_the_server_optimizer_and_constants_kept() -> None:
    roles = WeightRoles.of(SPEC)
    mean = _mean(roles, [_delta(1.0), _delta(3.0)], [1, 1])
    # No warm-up and no step cap: the server_lr arithmetic below is the paper's.
    plain = FedAvgM(server_lr=0.5, momentum=0.9, warmup_rounds=0, max_step_ratio=None)
    result = plain.next_weights(GLOBAL, ServerState(), mean, None, roles)
    new = result.new_weights

    assert new["norm/count"].dtype == np.int64 and new["norm/count"] == 100
    np.testing.assert_array_equal(new["norm/mean"], GLOBAL["norm/mean"])
    # The devices' mean statistics: base + mean delta, not server_lr times it.
    np.testing.assert_allclose(new["bn/moving_mean"], np.full(2, 20.0))
    np.testing.assert_allclose(new["bn/moving_variance"], np.full(2, 0.5))
    np.testing.assert_allclose(new["dense/kernel"], np.full((2, 2), 1.0))  # 0.5 * mean 2
    assert set(result.state.slots["momentum"]) == {"dense/kernel", "bn/gamma"}


def test_central_dp_keeps_every_statistic_and_noises_trained_weights_only() -> None:
    config = ServerConfig(dp_clip_norm=1.0, dp_noise_multiplier=5.0, dp_insecure_test_seed=3)
    strategy = RoundStrategy(config, SPEC)
    mean = StreamingMean()
    for scale in (0.1, 0.2, 0.3):
        prepared = strategy.strategy.prepare(strategy.roles.trained(_delta(scale)), 10)
        untrained = {n: v for n, v in _delta(scale).items() if n in strategy.roles.statistics}
        mean.add({**prepared.delta, **untrained}, prepared.weight)

    result = strategy.round_result(GLOBAL, ServerState(), mean, [], 0)

    new = result.weights
    np.testing.assert_array_equal(new["bn/moving_variance"], GLOBAL["bn/moving_variance"])
    np.testing.assert_array_equal(new["bn/moving_mean"], GLOBAL["bn/moving_mean"])
    assert new["norm/count"].dtype == np.int64
    assert not np.array_equal(new["dense/kernel"], GLOBAL["dense/kernel"])  # noised


def test_a_local_state_pattern_that_matches_nothing_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="matches no weight"):
        RoundStrategy(ServerConfig(local_state=("conv/moving_mean",)), SPEC)
    roles = RoundStrategy(ServerConfig(local_state=("bn",)), SPEC).roles
    assert roles.statistics == frozenset()
    assert {"bn/moving_mean", "bn/moving_variance"} <= roles.kept
