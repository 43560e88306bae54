"""The records of canary evaluations and decisions, as
:class:`~fedge.server.storage.store.CanaryRows` reads and writes them (the
SQL is in :mod:`fedge.server.storage.sqlite.canary`).

An evaluation holds a device's numbers only: the losses and metrics of the
candidate and the baseline, how many examples they were measured on, the
candidate's latency and which model the device serves. One per device and
release.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
