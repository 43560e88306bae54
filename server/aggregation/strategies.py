"""Server strategies: how the updates of a round become the next global model.

A strategy is two stages, each a method::

    accepted update --prepare--> (delta, weight) --+--> StreamingMean   (mean family)
                                                   +--> stored file     (robust family)
    round closes: next_weights(global_weights, state, mean, source)
        combine  the updates into one direction: the weighted mean, a
                 coordinate-wise median or trimmed mean (+ noise: CentralDP)
        apply    a server optimizer to the direction: SGD with a server
                 learning rate, momentum (FedAvgM) or Adam (FedAdam)
        -> AggregateResult(new_weights, state, metrics)

FedAvgM and FedAdam are made for training from scratch, where a step many
times the devices' mean delta speeds things up. Federated fine-tuning
starts from a deployed model that is already good, and such a step throws
it away (FedAdam's first step moves every weight by about ``server_lr``:
on the trained digits CNN, 0.94 -> 0.27 accuracy in 3 rounds). So both
take a :class:`TrustRegion` by default: the step grows over the first
``warmup_rounds`` rounds, and its norm is at most ``max_step_ratio`` times
the norm of the round's mean delta (the step FedAvg would take). They keep
their own direction (momentum, Adam's per-weight scaling) inside that bound.

The server state (round and optimizer slots) is explicit and returned, not
kept in the strategy, so a round can be checkpointed and resumed; a
strategy is a frozen dataclass of settings and never modifies its inputs.
:func:`fedge.server.aggregation.factory.make_strategy` builds one from a
config name (a key of :data:`STRATEGIES`) and parameters.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from fedge.errors import ConfigError
from fedge.server.aggregation.errors import AggregationError
from fedge.server.aggregation.kernels import (
    StreamingMean,
    UpdateSource,
    check_spec,
    coordinate_median,
    spec_of,
    trimmed_mean,
)
from fedge.server.aggregation.pipeline import ExampleWeight, Stage, Weigh
from fedge.server.aggregation.roles import ALL_TRAINED, WeightRoles
from fedge.wire.update_codec import Weights, global_norm

Float64Array = npt.NDArray[np.float64]
Slots = dict[str, Weights]


@dataclass(frozen=True)
class ServerState:
    """What a strategy carries from round to round: the number of rounds
    aggregated so far and optimizer slots (``momentum``; Adam's ``m``, ``v``),
    each a full set of weights."""

    round: int = 0
    slots: Mapping[str, Weights] = field(default_factory=dict)

    def to_tensors(self) -> Weights:
        """The slots as one flat ``slot/weight-name`` mapping, for the codec."""
        return {
            f"{slot}/{name}": value for slot, ws in self.slots.items() for name, value in ws.items()
        }

    @classmethod
    def from_tensors(cls, round_: int, tensors: Mapping[str, npt.NDArray[Any]]) -> ServerState:
        slots: Slots = {}
        for key, value in tensors.items():
            slot, sep, name = key.partition("/")
            if not sep or not name:
                raise AggregationError(f"state tensor {key!r} is not 'slot/weight-name'")
            slots.setdefault(slot, {})[name] = np.asarray(value)
        return cls(round=round_, slots=slots)


@dataclass(frozen=True)
class PreparedUpdate:
    """An accepted update as the strategy wants it accumulated or stored."""

    delta: Weights
    weight: float
    norm: float
    clipped: bool


@dataclass(frozen=True)
class AggregateResult:
    new_weights: Weights
    state: ServerState
    metrics: dict[str, float]


class Strategy(ABC):
    """The base of all strategies; subclasses override ``combine`` (robust
    aggregates, DP noise) and/or ``apply`` (the server optimizer)."""

    name: ClassVar[str]
    # Robust aggregates need every update of the round (read from disk);
    # the mean family only needs the streaming mean.
    needs_stored_updates: ClassVar[bool] = False

    def weighing(self, example_cap: int | None = None) -> Weigh:
        """How each accepted update is weighed in the round's mean: by its
        example count, capped at ``example_cap`` when one is set."""
        return ExampleWeight(cap=example_cap)

    def update_stages(self, example_cap: int | None = None) -> tuple[Stage, ...]:
        """The stages this strategy adds to the update pipeline, run on each
        accepted update after validation's; they always end with
        :meth:`weighing`'s stage."""
        return (self.weighing(example_cap),)

    def prepare(self, delta: Mapping[str, npt.NDArray[Any]], num_examples: int) -> PreparedUpdate:
        """Called by the server when it accepts an update: weight it by its
        number of examples; the norm is for metrics."""
        if num_examples <= 0:
            raise AggregationError(f"num_examples must be positive, got {num_examples}")
        norm = global_norm(delta)
        if not math.isfinite(norm):
            raise AggregationError("update has non-finite values")
        return PreparedUpdate(dict(delta), float(num_examples), norm, clipped=False)

    def next_weights(
        self,
        global_weights: Mapping[str, npt.NDArray[Any]],
        state: ServerState,
        mean: StreamingMean | None = None,
        source: UpdateSource | None = None,
        roles: WeightRoles = ALL_TRAINED,
    ) -> AggregateResult:
        """The next global weights from this round's updates: ``mean`` holds
        the prepared updates streamed in, ``source`` the stored ones (both
        without ``roles.kept``). The server optimizer steps the trained
        weights; statistics become the devices' mean; kept weights are
        ``global_weights``' own, in their own dtype."""
        direction, metrics = self.combine(state, mean, source, roles)
        check_spec(spec_of(roles.averaged(global_weights)), direction, "aggregated delta")
        trained = roles.trained(global_weights)
        stepped, slots = self.apply(trained, state, roles.trained(direction))
        new_weights: Weights = {}
        for name, value in global_weights.items():
            if name in stepped:
                new_weights[name] = stepped[name]
            elif name in roles.statistics:
                new_weights[name] = _sgd({name: value}, direction, 1.0)[name]
            else:
                new_weights[name] = value
        metrics["delta_norm"] = global_norm(roles.trained(direction))
        metrics["step_norm"] = global_norm(
            {n: np.asarray(stepped[n], np.float64) - trained[n] for n in stepped}
        )
        return AggregateResult(new_weights, ServerState(state.round + 1, slots), metrics)

    def combine(
        self,
        state: ServerState,
        mean: StreamingMean | None,
        source: UpdateSource | None,
        roles: WeightRoles = ALL_TRAINED,
    ) -> tuple[Weights, dict[str, float]]:
        """The weighted mean of the deltas (the FedAvg family)."""
        if mean is None or mean.count == 0:
            raise AggregationError(f"{self.name} needs the streamed mean of at least one update")
        return mean.result(), {"num_updates": float(mean.count), "total_weight": mean.total_weight}

    @abstractmethod
    def apply(
        self, global_weights: Mapping[str, npt.NDArray[Any]], state: ServerState, direction: Weights
    ) -> tuple[Weights, Slots]:
        """The server optimizer: new weights and new slots."""


def _sgd(
    global_weights: Mapping[str, npt.NDArray[Any]], step: Mapping[str, npt.NDArray[Any]], lr: float
) -> Weights:
    """``w + lr * step`` in float64, returned in the weights' dtypes."""
    return {
        name: (np.asarray(value, np.float64) + lr * np.asarray(step[name], np.float64)).astype(
            np.asarray(value).dtype
        )
        for name, value in global_weights.items()
    }


def _slot(
    state: ServerState, slot: str, like: Mapping[str, npt.NDArray[Any]], fill: float
) -> dict[str, Float64Array]:
    """A slot from the state in float64, or ``fill`` on the first round."""
    saved = state.slots.get(slot)
    if saved is None:
        return {name: np.full(np.shape(value), fill, np.float64) for name, value in like.items()}
    # Slots saved before a model's state had roles may name it too: only
    # the trained weights' slots are read.
    saved = {name: value for name, value in saved.items() if name in like}
    check_spec(spec_of(like), saved, f"state slot {slot!r}")
    return {name: np.asarray(saved[name], np.float64) for name in like}


def _float32(weights: Mapping[str, Float64Array]) -> Weights:
    return {name: value.astype(np.float32) for name, value in weights.items()}


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


@dataclass(frozen=True)
class TrustRegion:
    """Bounds on a server optimizer's step, for fine-tuning a trained model.

    ``warmup_rounds``: the step is scaled by ``(round + 1) / (warmup_rounds
    + 1)`` until then (0: no warm-up), as the optimizer's slots are still
    one round's noise. ``max_step_ratio``: the step's norm is capped at this
    times the norm of the mean delta (``None``: no cap)."""

    warmup_rounds: int = 2
    max_step_ratio: float | None = 1.0

    def check(self) -> None:
        _check(self.warmup_rounds >= 0, f"warmup_rounds must be >= 0, got {self.warmup_rounds}")
        _check(
            self.max_step_ratio is None or self.max_step_ratio > 0,
            f"max_step_ratio must be > 0 (or None), got {self.max_step_ratio}",
        )

    def bound(
        self, step: Mapping[str, Float64Array], direction: Weights, round_: int
    ) -> dict[str, Float64Array]:
        """``step`` scaled by the warm-up, then shrunk into the trust region."""
        scale = min(1.0, (round_ + 1) / (self.warmup_rounds + 1))
        norm = scale * global_norm(step)
        if self.max_step_ratio is not None:
            cap = self.max_step_ratio * global_norm(direction)
            if norm > cap:
                scale *= cap / norm
        return {name: scale * value for name, value in step.items()}


@dataclass(frozen=True)
class FedAvg(Strategy):
    """McMahan et al. 2017: ``w + server_lr * weighted_mean(deltas)``."""

    name: ClassVar[str] = "fedavg"
    server_lr: float = 1.0

    def __post_init__(self) -> None:
        _check(self.server_lr > 0, f"server_lr must be > 0, got {self.server_lr}")

    def apply(
        self, global_weights: Mapping[str, npt.NDArray[Any]], state: ServerState, direction: Weights
    ) -> tuple[Weights, Slots]:
        return _sgd(global_weights, direction, self.server_lr), {}


@dataclass(frozen=True)
class FedAvgM(TrustRegion, Strategy):
    """Hsu et al. 2019, server momentum: ``v = momentum*v + mean``;
    ``w + server_lr * v`` (``v`` starts at zero), bounded by the
    :class:`TrustRegion`. The default momentum is 0.5, not the paper's 0.9:
    each round's devices pull the deployed model their own way, and 0.9
    keeps pushing the last rounds' way (the digits fleet's devices lost
    accuracy with it, bounded or not)."""

    name: ClassVar[str] = "fedavgm"
    server_lr: float = 1.0
    momentum: float = 0.5

    def __post_init__(self) -> None:
        _check(self.server_lr > 0, f"server_lr must be > 0, got {self.server_lr}")
        _check(0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}")
        self.check()

    def apply(
        self, global_weights: Mapping[str, npt.NDArray[Any]], state: ServerState, direction: Weights
    ) -> tuple[Weights, Slots]:
        velocity = _slot(state, "momentum", global_weights, 0.0)
        velocity = {n: self.momentum * v + direction[n] for n, v in velocity.items()}
        step = self.bound(
            {n: self.server_lr * v for n, v in velocity.items()}, direction, state.round
        )
        return _sgd(global_weights, step, 1.0), {"momentum": _float32(velocity)}


@dataclass(frozen=True)
class FedAdam(TrustRegion, Strategy):
    """Reddi et al. 2021, "Adaptive Federated Optimization", Algorithm 2:
    ``m = b1*m + (1-b1)*d``, ``v = b2*v + (1-b2)*d**2``,
    ``w + server_lr * m / (sqrt(v) + tau)``, with ``m`` starting at 0 and
    ``v`` at ``tau**2`` (the paper's ``v_-1 >= tau^2``), no bias correction;
    the step bounded by the :class:`TrustRegion`."""

    name: ClassVar[str] = "fedadam"
    server_lr: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    tau: float = 1e-3

    def __post_init__(self) -> None:
        _check(self.server_lr > 0, f"server_lr must be > 0, got {self.server_lr}")
        _check(0 <= self.beta1 < 1, f"beta1 must be in [0, 1), got {self.beta1}")
        _check(0 <= self.beta2 < 1, f"beta2 must be in [0, 1), got {self.beta2}")
        _check(self.tau > 0, f"tau must be > 0, got {self.tau}")
        self.check()

    def apply(
        self, global_weights: Mapping[str, npt.NDArray[Any]], state: ServerState, direction: Weights
    ) -> tuple[Weights, Slots]:
        m = _slot(state, "m", global_weights, 0.0)
        v = _slot(state, "v", global_weights, self.tau**2)
        d = {n: np.asarray(direction[n], np.float64) for n in global_weights}
        m = {n: self.beta1 * m[n] + (1 - self.beta1) * d[n] for n in d}
        v = {n: self.beta2 * v[n] + (1 - self.beta2) * d[n] ** 2 for n in d}
        step = {n: self.server_lr * m[n] / (np.sqrt(v[n]) + self.tau) for n in d}
        step = self.bound(step, direction, state.round)
        return _sgd(global_weights, step, 1.0), {"m": _float32(m), "v": _float32(v)}


class _RobustStrategy(Strategy):
    """Robust aggregates: unweighted, over the stored updates, then SGD."""

    needs_stored_updates: ClassVar[bool] = True
    server_lr: float

    def combine(
        self,
        state: ServerState,
        mean: StreamingMean | None,
        source: UpdateSource | None,
        roles: WeightRoles = ALL_TRAINED,
    ) -> tuple[Weights, dict[str, float]]:
        if source is None or len(source) == 0:
            raise AggregationError(f"{self.name} needs the stored updates of the round")
        metrics = {"num_updates": float(len(source)), "total_weight": float(sum(source.weights()))}
        return self.robust(source), metrics

    @abstractmethod
    def robust(self, source: UpdateSource) -> Weights: ...

    def apply(
        self, global_weights: Mapping[str, npt.NDArray[Any]], state: ServerState, direction: Weights
    ) -> tuple[Weights, Slots]:
        return _sgd(global_weights, direction, self.server_lr), {}


@dataclass(frozen=True)
class Median(_RobustStrategy):
    """Yin et al. 2018: the coordinate-wise median of the deltas."""

    name: ClassVar[str] = "median"
    server_lr: float = 1.0

    def __post_init__(self) -> None:
        _check(self.server_lr > 0, f"server_lr must be > 0, got {self.server_lr}")

    def robust(self, source: UpdateSource) -> Weights:
        return coordinate_median(source)


@dataclass(frozen=True)
class TrimmedMean(_RobustStrategy):
    """Yin et al. 2018: the coordinate-wise mean without the
    ``floor(trim_fraction * n)`` largest and smallest values."""

    name: ClassVar[str] = "trimmed_mean"
    trim_fraction: float = 0.1
    server_lr: float = 1.0

    def __post_init__(self) -> None:
        _check(
            0 <= self.trim_fraction < 0.5,
            f"trim_fraction must be in [0, 0.5), got {self.trim_fraction}",
        )
        _check(self.server_lr > 0, f"server_lr must be > 0, got {self.server_lr}")

    def robust(self, source: UpdateSource) -> Weights:
        return trimmed_mean(source, self.trim_fraction)


_BUILT_IN: tuple[type[Strategy], ...] = (FedAvg, FedAvgM, FedAdam, Median, TrimmedMean)
STRATEGIES: Mapping[str, type[Strategy]] = MappingProxyType({cls.name: cls for cls in _BUILT_IN})
