"""How the global model moves: synchronous rounds (the default) or
asynchronous buffered aggregation (FedBuff): the ``[aggregation]`` table of
the server's configuration.

In ``async`` mode the server holds a model *version*; a device may ask for
work at any time and trains on the current version, at most
``concurrency`` devices at once; every ``buffer`` accepted updates make one
server step and the next version. An upload trained on a version more than
``max_staleness`` versions old is refused; the others are weighed by
``staleness_weight`` (see :mod:`fedge.server.rounds.buffered.staleness`),
and with ``scaled_step`` the step is scaled by the buffer's mean factor
(of ``step_weight``'s function, if set). ``slow_factor`` keeps seats for
the devices the server measured fast (off by default).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fedge.server.config_values import coerce
from fedge.server.errors import ConfigurationError

MODES = ("sync", "async")
STALENESS_WEIGHTS = ("sqrt", "constant", "hinge")


@dataclass(frozen=True)
class AsyncConfig:
    """The aggregation mode and, for ``async``, its buffer and bounds."""

    mode: str = "sync"
    # Accepted updates per server step (FedBuff's K).
    buffer: int = 10
    # Devices training at once; the others are told when to ask again.
    concurrency: int = 20
    # Versions an update's base may lag the current one; older is refused.
    max_staleness: int = 5
    # sqrt: 1/sqrt(1+s) (FedBuff); constant: 1; hinge: 1 up to hinge_after,
    # then 1/(1 + s - hinge_after).
    staleness_weight: str = "sqrt"
    hinge_after: int = 2
    # How long a device may train on its task (None: rounds.deadline_s).
    lease_s: float | None = None
    # FedBuff's step: the buffer's weighted mean times its mean staleness
    # factor, so that a buffer of stale updates moves the model less (false:
    # the factors only weigh the buffer's updates against each other).
    scaled_step: bool = False
    # With scaled_step: the staleness weight whose buffer mean scales the
    # step (None: staleness_weight's). "sqrt" with hinge weights shrinks the
    # step as concurrency (and so staleness) grows, as a smaller server
    # learning rate would.
    step_weight: str | None = None
    # Fast devices first (0: off): a device whose last task took more than
    # this many times the median of the recent tasks, as the server measured
    # them (lease granted to update accepted; never what a device says), gets
    # a seat only while at most half the seats are taken.
    slow_factor: float = 0.0

    @property
    def enabled(self) -> bool:
        return self.mode == "async"

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ConfigurationError(f"aggregation mode must be one of {', '.join(MODES)}")
        if self.staleness_weight not in STALENESS_WEIGHTS:
            raise ConfigurationError(
                f"staleness_weight must be one of {', '.join(STALENESS_WEIGHTS)}"
            )
        if self.step_weight is not None:
            if self.step_weight not in STALENESS_WEIGHTS:
                raise ConfigurationError(
                    f"step_weight must be one of {', '.join(STALENESS_WEIGHTS)}"
                )
            if not self.scaled_step:
                raise ConfigurationError("step_weight needs scaled_step = true")
        if self.buffer < 1 or self.concurrency < 1:
            raise ConfigurationError("aggregation buffer and concurrency must be >= 1")
        if self.max_staleness < 0 or self.hinge_after < 0:
            raise ConfigurationError("max_staleness and hinge_after must be >= 0")
        if self.lease_s is not None and not 0 < self.lease_s < float("inf"):
            raise ConfigurationError("lease_s must be > 0")
        if not (self.slow_factor == 0 or 1 <= self.slow_factor < float("inf")):
            raise ConfigurationError("slow_factor must be 0 (off) or >= 1")


def build_async_config(raw: Any) -> AsyncConfig:
    """An ``[aggregation]`` table, a mode alone, or a ready record, as an :class:`AsyncConfig`."""
    if isinstance(raw, AsyncConfig):
        return raw
    if isinstance(raw, str):  # aggregation = "async" (or FEDGE_AGGREGATION=async): the mode
        return AsyncConfig(mode=raw)
    if not isinstance(raw, Mapping):
        raise ConfigurationError("aggregation must be a table")
    fields = {f.name: f for f in dataclasses.fields(AsyncConfig)}
    unknown = set(raw) - set(fields)
    if unknown:
        raise ConfigurationError(f"unknown aggregation keys: {', '.join(sorted(unknown))}")
    return AsyncConfig(**{k: coerce(k, fields[k].type, v) for k, v in raw.items()})
