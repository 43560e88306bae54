"""One secure round: the protocol's aggregator, its stages' clocks, and its end.

::

    advertise --target advertised, or the round's deadline with quorum--> share
       |                                                                 |
       +--deadline without quorum--> abandoned      every one in, or stage_s
                                                                         v
    done (sum) | failed (too few shares) <--unmask <--every one in, or stage_s-- upload

Requests only record and close a stage whose devices have all answered;
unmasking, the one slow step, runs on the round driver (:meth:`finish_if_due`)
under the running sum's lock, so the two never wait for each other.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedge.secagg import SecAggAggregator, SecAggError, SecAggResult, Stage
from fedge.server.secure_config import SecureAggregationConfig
from fedge.wire.update_codec import Weights
from fedge.wire.weight_spec import ModelSpec

MIN_ADVERTISED = 3

log = logging.getLogger("fedge.server")


@dataclass(frozen=True)
class SecureOutcome:
    mean: Weights | None  # None: the round failed
    survivors: list[str]
    reason: str


class SecureSession:
    def __init__(
        self,
        round_id: int,
        deadline_at: float,
        config: SecureAggregationConfig,
        target: int,
        quorum: int,
        spec: ModelSpec,
    ) -> None:
        self.round_id = round_id
        self.lock = threading.Lock()
        self._deadline_at = deadline_at
        self._config = config
        self._target, self._quorum = target, max(quorum, MIN_ADVERTISED)
        self._spec = spec
        self.aggregator = SecAggAggregator(round_id, config.dropout, config.clip, spec.size)
        self._stage_started = 0.0
        self.abandoned = False
        self.outcome: SecureOutcome | None = None
        self.dropped_per_stage: dict[str, int] = {}

    @property
    def stage(self) -> str:
        if self.abandoned:
            return "abandoned"
        if self.outcome is not None:
            return "done" if self.outcome.mean is not None else "failed"
        return self.aggregator.stage.value

    def advance(self, now: float) -> None:
        """Close every stage that is due (never the unmasking: see the module doc).
        Call with :attr:`lock` held."""
        agg = self.aggregator
        counts = agg.counts()
        advertising = agg.stage is Stage.ADVERTISE and not self.abandoned
        if advertising and (counts["advertised"] >= self._target or now >= self._deadline_at):
            if counts["advertised"] < self._quorum:
                self.abandoned = now >= self._deadline_at
                return
            params = agg.close_advertising()
            log.info("round %d: %s", self.round_id, params.describe())
            self._stage_started = now
        counts = agg.counts()
        late = now >= self._stage_started + self._config.stage_s
        if agg.stage is Stage.SHARE and (counts["shared"] >= counts["advertised"] or late):
            agg.close_sharing()
            self.dropped_per_stage["share"] = counts["advertised"] - agg.counts()["shared"]
            self._stage_started = now
            return
        if agg.stage is Stage.UPLOAD and (counts["uploaded"] >= counts["shared"] or late):
            agg.close_upload()
            self.dropped_per_stage["upload"] = counts["shared"] - counts["uploaded"]
            self._stage_started = now

    def unmask_due(self, now: float) -> bool:
        counts = self.aggregator.counts()
        return self.aggregator.stage is Stage.UNMASK and (
            counts["unmask_answers"] >= counts["uploaded"]
            or now >= self._stage_started + self._config.stage_s
        )

    def finish(self) -> SecureOutcome:
        """Unmask: the survivors' mean, or why not. Call with :attr:`lock` held."""
        counts = self.aggregator.counts()
        self.dropped_per_stage["unmask"] = counts["uploaded"] - counts["unmask_answers"]
        survivors = self.aggregator.unmask_request().survivors
        try:
            result = self.aggregator.finish()
        except SecAggError as exc:
            self.outcome = SecureOutcome(None, survivors, f"secure aggregation failed: {exc}")
        else:
            self.outcome = SecureOutcome(self._mean(result), survivors, "")
        return self.outcome

    def _mean(self, result: SecAggResult) -> Weights:
        """Each device weighs the same (docs/security.md): the sum / count."""
        flat = result.values / result.count
        mean: Weights = {}
        offset = 0
        for weight in self._spec:
            mean[weight.name] = (
                flat[offset : offset + weight.size].reshape(weight.shape).astype(np.float32)
            )
            offset += weight.size
        return mean

    def metrics(self) -> dict[str, Any]:
        """Survivors and dropouts per stage, and the parameters, for the round."""
        counts = self.aggregator.counts()
        params = self.aggregator.params
        metrics: dict[str, Any] = {
            "secure_aggregation": True,
            "secure_stage": self.stage,
            **{f"secure_{name}": value for name, value in counts.items()},
            **{f"secure_dropped_{k}": v for k, v in self.dropped_per_stage.items()},
        }
        if params is not None:
            metrics["secure_params"] = params.to_dict()
        return metrics
