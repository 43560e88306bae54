"""PROVISIONAL: FedAvg only, until the strategies module lands."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedge.server.aggregation import StreamingMean
from fedge.server.config import ServerConfig
from fedge.server.validation import ValidatedUpdate
from fedge.update_codec import Weights


@dataclass(frozen=True)
class RoundResult:
    weights: Weights
    state: Any
    metrics: dict[str, Any] = field(default_factory=dict)


class RoundStrategy:
    def __init__(self, config: ServerConfig) -> None:
        self.name = config.strategy

    def prepare_update(self, valid: ValidatedUpdate) -> ValidatedUpdate:
        return valid

    def aggregate(
        self, global_weights: Weights, state: Any, accumulator: StreamingMean, paths: list[Path]
    ) -> RoundResult:
        mean = accumulator.result()
        return RoundResult({k: v + mean[k] for k, v in global_weights.items()}, state)


def build_strategy(config: ServerConfig) -> RoundStrategy:
    return RoundStrategy(config)


def load_strategy_state(directory: Path, checkpoint_id: str) -> Any:
    return None


def save_strategy_state(directory: Path, checkpoint_id: str, state: Any) -> None:
    return None
