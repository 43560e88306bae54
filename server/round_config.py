"""What every synchronous round asks of devices and when it closes: the
``[rounds]`` table of the server's configuration.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fedge.server.config_values import coerce
from fedge.server.errors import ConfigurationError


@dataclass(frozen=True)
class RoundConfig:
    """What every round asks of devices and when it closes."""

    local_epochs: int = 1
    batch_size: int = 16
    learning_rate: float = 0.05
    deadline_s: float = 60.0
    target_participants: int = 10
    min_participants: int = 2
    over_selection: float = 1.3
    require_idle: bool = False
    require_charging: bool = False
    require_unmetered: bool = False

    def validate(self) -> None:
        if self.target_participants < 1 or self.min_participants < 1:
            raise ConfigurationError("target and minimum participants must be >= 1")
        if self.min_participants > self.target_participants:
            raise ConfigurationError(
                f"min_participants ({self.min_participants}) > target_participants "
                f"({self.target_participants})"
            )
        if self.over_selection < 1.0:
            raise ConfigurationError("over_selection must be >= 1.0")
        if self.deadline_s <= 0 or self.local_epochs < 1 or self.batch_size < 1:
            raise ConfigurationError("deadline_s, local_epochs and batch_size must be positive")
        if not self.learning_rate > 0:
            raise ConfigurationError("learning_rate must be > 0")

    @property
    def selection_slots(self) -> int:
        return max(self.target_participants, round(self.target_participants * self.over_selection))


def build_round_config(raw: Any) -> RoundConfig:
    """A ``[rounds]`` table (or a ready record) as a :class:`RoundConfig`."""
    if isinstance(raw, RoundConfig):
        return raw
    if not isinstance(raw, Mapping):
        raise ConfigurationError("rounds must be a table")
    fields = {f.name: f for f in dataclasses.fields(RoundConfig)}
    unknown = set(raw) - set(fields)
    if unknown:
        raise ConfigurationError(f"unknown round keys: {', '.join(sorted(unknown))}")
    return RoundConfig(**{k: coerce(k, fields[k].type, v) for k, v in raw.items()})
