"""The coordinator's side of a strategy: what happens to an update when it
is accepted, what happens at close, and what survives a restart.

* at acceptance, the strategy's stages of the update pipeline
  (:attr:`RoundStrategy.stages`, see :mod:`fedge.server.aggregation.pipeline`)
  clip and weigh the update with the norm validation measured (central DP
  clips to its bound and weighs every device the same, as does
  ``device_weighting = "equal"``; otherwise the weight is the capped
  example count); the prepared delta is what gets
  stored, so a restart re-adds exactly what was acknowledged, with
  :meth:`RoundStrategy.weight` and without measuring anything again;
* at close, no update keeps more than ``max_share_multiple / n`` of the
  round's weight (the share cap: the few updates it cuts are read back and
  their excess taken out of a copy of the streamed mean); the strategy
  combines the streamed mean (or, for robust
  strategies, the stored updates read block by block) and applies its
  server optimizer; with central DP the privacy spent so far is reported;
* optimizer slots (momentum, Adam's moments) are saved beside the
  checkpoint they belong to, ``<checkpoint id>.safetensors`` of the strategy
  blob store (:mod:`fedge.server.storage.blobs`; ``strategy/`` of the data
  directory).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fedge.server.aggregation.factory import make_strategy
from fedge.server.aggregation.influence import max_share, share_capped_weights
from fedge.server.aggregation.kernels import SafetensorsFileUpdates, StreamingMean
from fedge.server.aggregation.pipeline import Stage, UnitWeight, Weigh
from fedge.server.aggregation.roles import WeightRoles
from fedge.server.aggregation.strategies import ServerState, Strategy
from fedge.server.config import ServerConfig
from fedge.server.errors import ConfigurationError
from fedge.server.rounds.buffered.staleness import staleness_factor
from fedge.server.storage.blobs import BlobStore
from fedge.wire.file_span import FileSpan
from fedge.wire.update_codec import (
    Checkpoint,
    Weights,
    decode_checkpoint,
    decode_update,
    encode_checkpoint,
)
from fedge.wire.weight_spec import ModelSpec, WeightSpecError


@dataclass(frozen=True)
class RoundResult:
    weights: Weights
    state: ServerState
    metrics: dict[str, Any]


# What the reported epsilon assumes, stated in every DP round's metrics.
DP_ACCOUNTING = (
    "device-level (add or remove one device's update), each round a Gaussian mechanism "
    "on the sum of clipped updates, composed over the closed rounds with the RDP "
    "accountant; no amplification by sampling is claimed (devices are not Poisson-"
    "sampled), so the bound holds whichever devices take part"
)


class RoundStrategy:
    def __init__(self, config: ServerConfig, specs: ModelSpec | None = None) -> None:
        """``specs``: the model's weights, whose state (see
        :mod:`fedge.server.aggregation.roles`) stays out of norms, clips,
        noise and, kept state, the aggregate (None: every weight trained)."""
        self._config = config
        self.dp: dict[str, Any] | None = None
        if config.dp_clip_norm is not None:
            self.dp = {
                "clip_norm": config.dp_clip_norm,
                "noise_multiplier": config.dp_noise_multiplier,
                "seed": config.dp_insecure_test_seed,
                "clients_per_round": config.rounds.target_participants,
            }
        self.strategy: Strategy = make_strategy(
            config.strategy, dp=self.dp, **config.strategy_params
        )
        self.name = config.strategy + ("+dp" if self.dp else "")
        self.roles = WeightRoles()
        if specs is not None:
            try:
                self.roles = WeightRoles.of(specs, config.local_state, private=self.dp is not None)
            except WeightSpecError as exc:
                raise ConfigurationError(str(exc)) from exc
        # The strategy's stages of the update pipeline, after validation's;
        # the last one weighs (device_weighting "equal": 1 each).
        cap = config.max_example_weight
        self._weigh: Weigh = self.strategy.weighing(cap)
        stages = self.strategy.update_stages(cap)
        if config.device_weighting == "equal":
            self._weigh = UnitWeight()
            stages = (*stages[:-1], self._weigh)
        self.stages: tuple[Stage, ...] = stages
        self._share_multiple = config.max_share_multiple

    def weight(self, deltas: Weights | None, num_examples: int) -> float:
        """The accumulation weight of a stored (already prepared) update:
        from its example count alone (``deltas`` is not read)."""
        return self._weigh.weight_of(num_examples)

    def round_weights(
        self, num_examples: Sequence[int], factors: Sequence[float] | None = None
    ) -> list[float]:
        """The weights a closing round's updates have in its mean: each
        one's :meth:`weight` (times its staleness factor in async mode), with
        the share cap
        (:func:`~fedge.server.aggregation.influence.share_capped_weights`)."""
        weights = _times([self.weight(None, n) for n in num_examples], factors)
        if not weights:
            return weights
        return share_capped_weights(weights, max_share(len(weights), self._share_multiple))

    def step_scale(
        self, factors: Sequence[float] | None, lags: Sequence[int] | None = None
    ) -> float:
        """What the buffer's mean is multiplied by before the server step:
        with ``aggregation.scaled_step`` (async mode, the mean family), the
        mean of the buffer's staleness ``factors`` (FedBuff: a buffer of
        stale updates moves the model less), or, with ``step_weight``, the
        mean of that function of the updates' ``lags``; otherwise 1."""
        aggregation = self._config.aggregation
        if not factors or not aggregation.scaled_step:
            return 1.0
        if self.strategy.needs_stored_updates:
            return 1.0  # median and trimmed mean ignore weights, staleness included
        if aggregation.step_weight is not None and lags is not None:
            kind, after = aggregation.step_weight, aggregation.hinge_after
            factors = [staleness_factor(kind, lag, after) for lag in lags]
        return sum(factors) / len(factors)

    def averaged(self, deltas: Weights) -> Weights:
        """What of an accepted update goes into the round's mean: all but
        the kept state."""
        return self.roles.averaged(deltas)

    def round_result(
        self,
        global_weights: Weights,
        state: ServerState,
        accumulator: StreamingMean,
        paths: Sequence[FileSpan],
        rounds_closed_before: int,
        num_examples: Sequence[int] | None = None,
        factors: Sequence[float] | None = None,
        lags: Sequence[int] | None = None,
    ) -> RoundResult:
        """This round's result; with central DP, the epsilon spent once it is
        released (``rounds_closed_before`` earlier releases plus this one).
        ``paths``: where the round's updates are stored. ``num_examples``
        (one per update): the share cap is applied to the streamed mean (a
        copy: ``accumulator`` is not changed), reading back the few updates
        it cuts."""
        if num_examples is not None and not self.strategy.needs_stored_updates:
            accumulator = self._share_capped(accumulator, paths, num_examples, factors)
        scale = self.step_scale(factors, lags)
        if scale != 1.0:
            accumulator = accumulator.scaled(scale)
        source = (
            SafetensorsFileUpdates(
                paths,
                ModelSpec.of_weights(global_weights),
                names=tuple(self.roles.averaged(global_weights)),
            )
            if self.strategy.needs_stored_updates
            else None
        )
        result = self.strategy.next_weights(
            global_weights, state, accumulator, source, roles=self.roles
        )
        metrics: dict[str, Any] = dict(result.metrics)
        if scale != 1.0:
            metrics["step_scale"] = scale
        if self.dp is not None:
            # dp_accounting takes 1.5 s to import: only servers with DP pay it.
            from fedge.server.aggregation.privacy import PrivacyLedger

            ledger = PrivacyLedger(
                noise_multiplier=float(self.dp["noise_multiplier"]),
                sample_rate=1.0,
                delta=self._config.dp_delta,
                rounds=rounds_closed_before + 1,
            )
            metrics.update(
                dp_epsilon=ledger.epsilon,
                dp_delta=self._config.dp_delta,
                dp_noise_multiplier=self.dp["noise_multiplier"],
                dp_clip_norm=self.dp["clip_norm"],
                dp_sample_rate=1.0,
                dp_accounting=DP_ACCOUNTING,
                dp_noise_seeded=self.dp["seed"] is not None,
            )
        return RoundResult(result.new_weights, result.state, metrics)

    def _share_capped(
        self,
        accumulator: StreamingMean,
        paths: Sequence[FileSpan],
        num_examples: Sequence[int],
        factors: Sequence[float] | None = None,
    ) -> StreamingMean:
        """The streamed mean with each update cut to its capped weight: its
        stored (prepared) deltas are read back and the excess taken out."""
        weights = _times([self.weight(None, n) for n in num_examples], factors)
        capped = self.round_weights(num_examples, factors)
        cuts = [(p, w - c) for p, w, c in zip(paths, weights, capped, strict=True) if c < w]
        if not cuts:
            return accumulator
        mean = accumulator.copy()
        for span, excess in cuts:
            deltas = decode_update(span.read()).deltas
            mean.take_back(self.averaged(deltas), excess)
        return mean


def _times(weights: list[float], factors: Sequence[float] | None) -> list[float]:
    if factors is None:
        return weights
    return [w * f for w, f in zip(weights, factors, strict=True)]


def load_strategy_state(blobs: BlobStore, checkpoint_id: str, rounds_closed: int) -> ServerState:
    name = _state_file(checkpoint_id)
    if not blobs.exists(name):
        return ServerState(round=rounds_closed)
    saved = decode_checkpoint(blobs.get(name))
    return ServerState.from_tensors(saved.round_id, saved.weights)


def save_strategy_state(blobs: BlobStore, checkpoint_id: str, state: ServerState) -> None:
    tensors = state.to_tensors()
    if tensors:
        data = encode_checkpoint(Checkpoint(round_id=state.round, weights=tensors))
        blobs.put(_state_file(checkpoint_id), data)


def _state_file(checkpoint_id: str) -> str:
    return f"{checkpoint_id}.safetensors"
