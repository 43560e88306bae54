"""Staleness in asynchronous aggregation: how many versions an update lags,
whether it may still count, and how much.

A *version* is a round of the async mode (see
:mod:`fedge.server.rounds.buffered.selection`): the round a device's task named
is the version it trained on, and an accepted update goes into the buffer of
the round open when it commits. Its staleness is the difference of the two
round ids: the number of server steps taken since its base was current (a
step that failed, and so left the model as it was, counts too, which only
ever makes an update look older than it is).

Decisions on plain values, so that each can be checked by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fedge.server.async_config import AsyncConfig
from fedge.server.errors import Conflict


def staleness_factor(kind: str, staleness: int, hinge_after: int = 2) -> float:
    """The weight factor of an update ``staleness`` versions old.

    * ``sqrt``: ``1 / sqrt(1 + s)``, FedBuff's default;
    * ``constant``: 1 (only the bound applies);
    * ``hinge``: 1 up to ``hinge_after``, then ``1 / (1 + s - hinge_after)``.
    """
    if staleness < 0:
        raise ValueError(f"staleness {staleness} < 0")
    if kind == "sqrt":
        return 1.0 / math.sqrt(1.0 + staleness)
    if kind == "constant":
        return 1.0
    if kind == "hinge":
        return 1.0 if staleness <= hinge_after else 1.0 / (1.0 + staleness - hinge_after)
    raise ValueError(f"unknown staleness weight {kind!r}")


@dataclass(frozen=True)
class StalenessPolicy:
    kind: str
    max_staleness: int
    hinge_after: int

    @classmethod
    def of(cls, config: AsyncConfig) -> StalenessPolicy:
        return cls(config.staleness_weight, config.max_staleness, config.hinge_after)

    def staleness(self, base_version: int, current_version: int) -> int:
        """Versions since ``base_version``; refused (409 ``too_stale``) past the bound."""
        lag = current_version - base_version
        if lag < 0:  # a task is only ever handed out for the current version
            raise Conflict(
                f"version {base_version} is newer than the current {current_version}",
                code="unknown_version",
            )
        if lag > self.max_staleness:
            raise Conflict(
                f"the update was trained on version {base_version}, {lag} versions before the "
                f"current {current_version} (at most {self.max_staleness}); fetch a new task",
                code="too_stale",
            )
        return lag

    def factor(self, staleness: int) -> float:
        return staleness_factor(self.kind, staleness, self.hinge_after)
