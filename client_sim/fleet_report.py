"""What a fleet run found: per round, and for the deployed, final and
personalised models (plain data, written as the JSON report)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fedge.update_codec import Weights


@dataclass
class RoundReport:
    round_id: int
    state: str
    # The global model after the round on the global test split: loss and
    # the headline metric (accuracy, or mae for a regressor).
    metrics: dict[str, float]
    participants: int
    dropouts: int
    rejects: dict[str, int]
    bytes_up: int
    bytes_down: int
    seconds: float


@dataclass
class Scores:
    """A model's loss and headline metric on the global test split and on
    the devices' own held-out data (the mean over devices)."""

    global_test: dict[str, float]
    devices: dict[str, float]


@dataclass
class FleetReport:
    config: dict[str, Any]
    # The federated model: its name and bundle id (the sha256 of its manifest).
    model: dict[str, str]
    metric: str
    partition: str
    rounds: list[RoundReport]
    selected: dict[int, list[int]]
    # "deployed" (the server's model before round 1), "final" (the global
    # model after the last round), "personalised" (each device's own choice).
    scores: dict[str, Scores]
    participation: list[int]
    crashes: int
    retries: int
    final_weights: Weights = field(repr=False, default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "model": self.model,
            "metric": self.metric,
            "partition": self.partition,
            "rounds": [vars(r) for r in self.rounds],
            "selected": {str(k): v for k, v in self.selected.items()},
            "scores": {name: vars(s) for name, s in self.scores.items()},
            "participation": self.participation,
            "crashes": self.crashes,
            "retries": self.retries,
        }


Progress = Callable[[RoundReport], None]
