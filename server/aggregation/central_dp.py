"""Central differential privacy around a mean-family strategy (DP-FedAvg).

McMahan et al. 2018, "Learning Differentially Private Recurrent Language
Models": every device's delta is clipped to L2 norm ``clip_norm`` when the
server accepts it, the clipped deltas are summed **unweighted**, Gaussian
noise is added to the sum, and the sum is divided by a denominator::

    noisy_mean = (sum_i clip(delta_i) + N(0, (noise_multiplier * clip_norm)^2 I)) / D

Why unweighted: with weights ``num_examples_i / total`` one device could
claim a huge ``num_examples`` and own the whole mean, so its influence (the
sensitivity) would not be bounded by ``clip_norm``. With unit weights,
adding or removing one device changes the sum by at most ``clip_norm`` in
L2 norm, so the noise's standard deviation relative to that sensitivity is
exactly ``noise_multiplier`` -- the parameter that
:mod:`fedge.server.aggregation.privacy` turns into (epsilon, delta). The streamed mean
must therefore hold the *prepared* updates (weight 1); ``combine`` checks
this and that the mean's norm is within the clip bound.

The denominator: ``clients_per_round`` when set (a fixed denominator: the
release is a function of the noisy sum alone, as in TFF's
``DifferentiallyPrivateFactory.gaussian_fixed``), else the number ``n`` of
updates received, giving per-coordinate noise ``noise_multiplier *
clip_norm / n`` on the plain mean; that variant treats the round's size as
public, which is the usual reading of device-level DP-FedAvg.

Its two stages are the update pipeline's (:mod:`fedge.server.aggregation.pipeline`):
:meth:`CentralDP.update_stages` clips each update (the one :class:`Clip`)
and weighs it 1 when the server accepts it, and :class:`GaussianNoise`
perturbs the mean when the round closes.

The noise comes from the operating system's entropy. ``seed`` exists for
tests only (the server takes it from ``dp_insecure_test_seed``, and says in
the round's metrics that the noise was seeded): whoever knows a seed can
regenerate the noise and subtract it, and the reported epsilon means nothing.
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
from fedge.server.aggregation.pipeline import Candidate, Clip, Stage, UnitWeight, run_stages
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

    def apply(self, mean: Mapping[str, npt.NDArray[Any]], count: int, round_: int) -> Weights:
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

    @property
    def clip_stage(self) -> Clip:
        return Clip(self.clip_norm, name="dp_clip")

    def update_stages(self) -> tuple[Stage, ...]:
        """What the server does to each accepted update: clip to
        ``clip_norm``, then weigh 1 whatever ``num_examples`` says."""
        return (self.clip_stage, UnitWeight())

    @property
    def noise(self) -> GaussianNoise:
        return GaussianNoise(
            self.clip_norm, self.noise_multiplier, self.clients_per_round, self.seed
        )

    def prepare(self, delta: Mapping[str, npt.NDArray[Any]], num_examples: int) -> PreparedUpdate:
        """Clipped, with weight 1 (see module doc): the server's stages, on a bare delta."""
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
        self, state: ServerState, mean: StreamingMean | None, source: UpdateSource | None
    ) -> tuple[Weights, dict[str, float]]:
        if mean is None or mean.count == 0:
            raise AggregationError("central DP needs the streamed mean of at least one update")
        count = mean.count
        if abs(mean.total_weight - count) > 1e-9 * count:
            raise AggregationError(
                "central DP needs unit weights: stream the updates returned by prepare()"
            )
        average = mean.result()
        if global_norm(average) > self.clip_norm * (1 + _NORM_SLACK):
            raise AggregationError("the mean exceeds clip_norm: the updates were not clipped")
        noise = self.noise
        noisy = noise.apply(average, count, state.round)
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
