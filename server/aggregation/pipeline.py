"""The update pipeline: the named stages an accepted update goes through
between its bytes and the round's mean (bounds, the norm bound, central
DP's clip, the weight), each a small frozen dataclass that knows nothing of
the others. A stage that will not take an update raises
:class:`~fedge.server.aggregation.errors.UpdateRefused`. How the stages fit
together, and why: ``docs/aggregation.md``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Protocol

import numpy as np
import numpy.typing as npt

from fedge.server.aggregation.errors import UpdateRefused
from fedge.server.aggregation.kernels import clip_factor, scale_weights
from fedge.wire.update_codec import Update, Weights, global_norm

MAX_NUM_EXAMPLES = 10_000_000


@dataclass(frozen=True)
class Candidate:
    """An update on its way through the stages.

    ``deltas`` are never modified; ``norm`` is their L2 norm as received
    (measured once); ``scale`` is the product of the clip factors so far,
    of which ``held_scale`` is already in ``deltas`` (1 for a fresh update;
    less for an update that was clipped by an earlier pipeline).
    ``untrained`` names the deltas outside the norm and the clips (the
    model's statistics and kept state, see
    :mod:`fedge.server.aggregation.roles`): they are carried as sent."""

    deltas: Mapping[str, npt.NDArray[Any]]
    num_examples: int
    norm: float
    scale: float = 1.0
    held_scale: float = 1.0
    weight: float = 0.0
    clipped_by: tuple[str, ...] = ()
    untrained: frozenset[str] = frozenset()

    @classmethod
    def measure(
        cls,
        deltas: Mapping[str, npt.NDArray[Any]],
        num_examples: int,
        untrained: frozenset[str] = frozenset(),
    ) -> Candidate:
        """A fresh candidate: its norm (over the trained deltas) is measured
        here, and only here."""
        trained = {name: value for name, value in deltas.items() if name not in untrained}
        return cls(deltas, num_examples, global_norm(trained), untrained=untrained)

    @property
    def current_norm(self) -> float:
        """The norm after the clips so far."""
        return self.norm * self.scale

    @property
    def clipped(self) -> bool:
        return bool(self.clipped_by)

    def scaled_deltas(self) -> Weights:
        """The deltas with every clip applied: scaled once, here, or the
        same arrays when no stage clipped."""
        factor = self.scale / self.held_scale
        if factor == 1.0:
            return dict(self.deltas)
        trained = {n: v for n, v in self.deltas.items() if n not in self.untrained}
        scaled = scale_weights(trained, factor)
        return {name: scaled.get(name, value) for name, value in self.deltas.items()}


class Stage(Protocol):
    """One named step: a candidate in, a candidate out (or an error)."""

    @property
    def name(self) -> str: ...

    def apply(self, candidate: Candidate) -> Candidate: ...


class Weigh(Stage, Protocol):
    """The stage that sets an update's accumulation weight. The weight
    depends on the example count alone, so that a restart can re-weigh a
    stored update without reading its deltas."""

    def weight_of(self, num_examples: int) -> float: ...


@dataclass(frozen=True)
class Bounds:
    """The update belongs here and its numbers are sane: the round and base
    checkpoint it claims, a finite norm (no NaN or inf anywhere) and an
    example count in ``1..max_num_examples``. The norm leaves out the
    ``untrained`` deltas, which are checked for finiteness alone."""

    name: ClassVar[str] = "bounds"
    round_id: int
    base_checkpoint: str
    max_num_examples: int = MAX_NUM_EXAMPLES
    untrained: frozenset[str] = frozenset()

    def admit(self, update: Update) -> Candidate:
        """The update as a candidate, with its norm measured (the first stage)."""
        meta = update.meta
        if meta.round_id != self.round_id:
            raise UpdateRefused(
                "misdirected",
                "wrong_round",
                f"the update is for round {meta.round_id}, uploaded to round {self.round_id}",
            )
        if meta.base_checkpoint != self.base_checkpoint:
            raise UpdateRefused(
                "stale",
                "stale_base",
                f"the update was trained from checkpoint {meta.base_checkpoint[:12]}, the "
                f"round's base is {self.base_checkpoint[:12]}; download the current checkpoint",
            )
        candidate = Candidate.measure(update.deltas, meta.num_examples, self.untrained)
        if not math.isfinite(candidate.norm) or not _all_finite(update.deltas, self.untrained):
            raise _not_finite(update.deltas)
        if not 0 < meta.num_examples <= self.max_num_examples:
            raise UpdateRefused(
                "invalid",
                "bad_num_examples",
                f"num_examples must be in 1..{self.max_num_examples}, got {meta.num_examples}",
            )
        return candidate


def _all_finite(deltas: Mapping[str, npt.NDArray[Any]], names: frozenset[str]) -> bool:
    return all(np.isfinite(deltas[name]).all() for name in names if name in deltas)


def _not_finite(deltas: Mapping[str, npt.NDArray[Any]]) -> UpdateRefused:
    """Why a norm is not finite: a NaN or inf value (named), or finite
    values so large that their squares overflow float64."""
    for name, value in deltas.items():
        if not np.isfinite(value).all():
            return UpdateRefused("invalid", "non_finite", f"{name} holds NaN or infinite values")
    return UpdateRefused("invalid", "norm_too_large", "the update's norm overflows float64")


@dataclass(frozen=True)
class Clip:
    """Scale the update down to L2 norm ``bound`` when it is above it."""

    bound: float
    name: str = "clip"

    def apply(self, candidate: Candidate) -> Candidate:
        factor = clip_factor(candidate.current_norm, self.bound)
        if factor >= 1.0:
            return candidate
        return replace(
            candidate,
            scale=candidate.scale * factor,
            clipped_by=(*candidate.clipped_by, self.name),
        )


@dataclass(frozen=True)
class NormBound:
    """The server's bound on an update's norm: ``reject`` refuses a larger
    update (``norm_too_large``), ``clip`` scales it down (a :class:`Clip`)."""

    max_norm: float
    policy: str = "reject"
    name: str = "norm_bound"

    def apply(self, candidate: Candidate) -> Candidate:
        if candidate.current_norm <= self.max_norm:
            return candidate
        if self.policy == "reject":
            raise UpdateRefused(
                "invalid",
                "norm_too_large",
                f"update norm {candidate.current_norm:.4g} exceeds the bound {self.max_norm:.4g}",
            )
        return Clip(self.max_norm, self.name).apply(candidate)


@dataclass(frozen=True)
class ExampleWeight:
    """Weigh by ``num_examples``, capped so that no device can claim to
    outweigh the whole round."""

    cap: int | None = None
    name: str = "weigh"

    def weight_of(self, num_examples: int) -> float:
        return float(num_examples if self.cap is None else min(num_examples, self.cap))

    def apply(self, candidate: Candidate) -> Candidate:
        return replace(candidate, weight=self.weight_of(candidate.num_examples))


@dataclass(frozen=True)
class UnitWeight:
    """Every update weighs 1 (central DP: a device's influence on the sum is
    bounded by the clip alone, whatever ``num_examples`` it claims)."""

    name: str = "weigh"

    def weight_of(self, num_examples: int) -> float:
        return 1.0

    def apply(self, candidate: Candidate) -> Candidate:
        return replace(candidate, weight=1.0)


def norm_stages(max_norm: float | None, policy: str) -> tuple[Stage, ...]:
    """The server's norm bound as stages (none when there is no bound)."""
    return () if max_norm is None else (NormBound(max_norm, policy),)


def run_stages(candidate: Candidate, stages: Sequence[Stage]) -> Candidate:
    for stage in stages:
        candidate = stage.apply(candidate)
    return candidate
