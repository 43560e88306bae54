"""The records of canary evaluations and decisions, as
:class:`CanaryRows` (below) reads and writes them (the
SQL is in :mod:`fedge.server.storage.sqlite.canary`).

An evaluation holds a device's numbers only: the losses and metrics of the
candidate and the baseline, how many examples they were measured on, the
candidate's latency and which model the device serves. One per device and
release.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from fedge.wire.canary import Evaluation


@dataclass(frozen=True)
class StoredEvaluation:
    device_id: str
    received_at: float
    evaluation: Evaluation

    def to_json(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "received_at": self.received_at,
            **self.evaluation.to_json(),
        }


@dataclass(frozen=True)
class Decision:
    decision: str
    device_id: str  # whose report decided
    change_id: int
    decided_at: float


class CanaryRows(Protocol):
    """The devices' evaluations of a candidate (one per device and release)
    and the decision they led to (one per release)."""

    def find(self, version: int, device_id: str) -> StoredEvaluation | None: ...

    def insert(
        self, version: int, device_id: str, evaluation: Evaluation, at: float
    ) -> StoredEvaluation: ...

    def listing(self, version: int, limit: int) -> list[StoredEvaluation]:
        """The first ``limit`` reports on ``version``, in the order they came."""

    def metric_of(self, version: int) -> str | None:
        """The metric the first report on ``version`` named (all must name it)."""

    def counted(self, version: int, before: float, require_history: bool) -> list[StoredEvaluation]:
        """The reports on ``version`` that count, in the order they came:
        from devices enrolled before ``before`` (the candidate's creation)
        that had a history by then (an accepted update, or a report on an
        earlier release), the history waived unless ``require_history``."""

    def eligible_devices(self, version: int, before: float, require_history: bool) -> list[str]:
        """The ids of the devices whose reports on ``version`` would count
        (observers never do)."""

    def count(self, version: int) -> tuple[int, dict[str, int]]:
        """Every report on ``version``, and how many per model the devices serve."""

    def decision(self, version: int) -> Decision | None: ...

    def record_decision(self, version: int, made: Decision) -> None: ...
