"""Central differential privacy around a mean-family strategy (DP-FedAvg,
McMahan et al. 2018): each accepted update is clipped to ``clip_norm`` and
weighed 1, and Gaussian noise is added to the round's mean. The noise comes
from the operating system's entropy; ``seed`` is for tests only. Why it
works this way, and what the reported epsilon assumes:
``docs/aggregation.md``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from fedge.errors import ConfigError
from fedge.server.aggregation.errors import AggregationError
from fedge.server.aggregation.kernels import StreamingMean, UpdateSource
from fedge.server.aggregation.pipeline import (
    Candidate,
    Clip,
    Stage,
    UnitWeight,
    Weigh,
    run_stages,
)
from fedge.server.aggregation.roles import ALL_TRAINED, WeightRoles
from fedge.server.aggregation.strategies import PreparedUpdate, ServerState, Slots, Strategy
from fedge.wire.update_codec import Weights, global_norm

# Relative slack for float32 rounding when checking that the mean is clipped.
_NORM_SLACK = 1e-4


@dataclass(frozen=True)
class GaussianNoise:
    """The ``noise`` stage: ``(sum + N(0, (noise_multiplier * clip_norm)^2 I)) / D``
    from the unweighted mean of ``count`` clipped updates, with ``D`` the
    fixed ``clients_per_round`` or ``count``."""

    name: ClassVar[str] = "noise"
    clip_norm: float
    noise_multiplier: float
    clients_per_round: int | None = None
    seed: int | None = None

    def denominator(self, count: int) -> int:
        return self.clients_per_round or count

    def std(self, count: int) -> float:
        """Per-coordinate standard deviation of the noise on the mean."""
        return self.noise_multiplier * self.clip_norm / self.denominator(count)

    def apply(
        self,
        mean: Mapping[str, npt.NDArray[Any]],
        count: int,
        round_: int,
        untrained: frozenset[str] = frozenset(),
    ) -> Weights:
        """Noise on the trained weights only: ``untrained`` means (a model's
        statistics) pass as they are, since noise on a variance can make it
        negative and the model's activations NaN."""
        denominator = self.denominator(count)
        std = self.std(count)
        rng = (
            np.random.default_rng()
            if self.seed is None
            else np.random.default_rng([self.seed, round_])
        )
        return {
            name: (
                np.asarray(value).astype(np.float64) * (count / denominator)
                + std * rng.standard_normal(np.shape(value))
            ).astype(np.float32)
            if name not in untrained
            else np.asarray(value)
            for name, value in mean.items()
        }


@dataclass(frozen=True)
class CentralDP(Strategy):
    """Clip each update, average unweighted, add Gaussian noise, then let
    ``inner`` (FedAvg, FedAvgM or FedAdam) apply its server optimizer."""

    name: ClassVar[str] = "central_dp"
    inner: Strategy
    clip_norm: float
    noise_multiplier: float
    seed: int | None = None
    clients_per_round: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.inner, Strategy) or isinstance(self.inner, CentralDP):
            raise ConfigError("central DP wraps one non-DP strategy")
        if self.inner.needs_stored_updates:
            raise ConfigError(
                f"central DP bounds the sensitivity of a mean; it cannot wrap {self.inner.name}"
            )
        if not (math.isfinite(self.clip_norm) and self.clip_norm > 0):
            raise ConfigError(f"clip_norm must be > 0, got {self.clip_norm}")
        if not (math.isfinite(self.noise_multiplier) and self.noise_multiplier >= 0):
            raise ConfigError(f"noise_multiplier must be >= 0, got {self.noise_multiplier}")
        if self.clients_per_round is not None and self.clients_per_round < 1:
            raise ConfigError(f"clients_per_round must be >= 1, got {self.clients_per_round}")

    def weighing(self, example_cap: int | None = None) -> Weigh:
        """Every update weighs 1, whatever ``num_examples`` it claims: a
        device's influence on the sum is bounded by the clip alone, so
        ``example_cap`` has nothing to bound."""
        return UnitWeight()

    def update_stages(self, example_cap: int | None = None) -> tuple[Stage, ...]:
        """Clip each accepted update to ``clip_norm``, then weigh it 1."""
        return (Clip(self.clip_norm, name="dp_clip"), *super().update_stages(example_cap))

    @property
    def noise(self) -> GaussianNoise:
        return GaussianNoise(
            self.clip_norm, self.noise_multiplier, self.clients_per_round, self.seed
        )

    def prepare(self, delta: Mapping[str, npt.NDArray[Any]], num_examples: int) -> PreparedUpdate:
        """Clipped, with weight 1: the server's stages, on a bare delta."""
        candidate = Candidate.measure(delta, num_examples)
        if not math.isfinite(candidate.norm):
            raise AggregationError("update has non-finite values; it cannot be clipped")
        done = run_stages(candidate, self.update_stages())
        return PreparedUpdate(done.scaled_deltas(), done.weight, done.norm, clipped=done.clipped)

    def noise_std(self, count: int) -> float:
        """Per-coordinate standard deviation of the noise on the mean of
        ``count`` updates."""
        return self.noise.std(count)

    def combine(
        self,
        state: ServerState,
        mean: StreamingMean | None,
        source: UpdateSource | None,
        roles: WeightRoles = ALL_TRAINED,
    ) -> tuple[Weights, dict[str, float]]:
        if mean is None or mean.count == 0:
            raise AggregationError("central DP needs the streamed mean of at least one update")
        count = mean.count
        if abs(mean.total_weight - count) > 1e-9 * count:
            raise AggregationError(
                "central DP needs unit weights: stream the updates returned by prepare()"
            )
        average = mean.result()
        if global_norm(roles.trained(average)) > self.clip_norm * (1 + _NORM_SLACK):
            raise AggregationError("the mean exceeds clip_norm: the updates were not clipped")
        noise = self.noise
        noisy = noise.apply(average, count, state.round, roles.untrained)
        metrics = {
            "num_updates": float(count),
            "total_weight": float(count),
            "dp_clip_norm": self.clip_norm,
            "dp_noise_multiplier": self.noise_multiplier,
            "dp_noise_std": noise.std(count),
            "dp_denominator": float(noise.denominator(count)),
        }
        return noisy, metrics

    def apply(
        self, global_weights: Mapping[str, npt.NDArray[Any]], state: ServerState, direction: Weights
    ) -> tuple[Weights, Slots]:
        return self.inner.apply(global_weights, state, direction)
