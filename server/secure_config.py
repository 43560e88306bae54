"""The ``[secure_aggregation]`` table of the server's configuration.

Off by default. On, every round is a secure round
(:mod:`fedge.server.rounds.secure`): the server obtains only the sum of the
devices' clipped, quantised updates. The operator declares the dropout the
rounds must survive and the clipping range; the rest of the protocol's
parameters follow (:class:`fedge.secagg.SecAggParams`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fedge.secagg.errors import SecAggError
from fedge.secagg.params import check_declared
from fedge.server.config_values import coerce
from fedge.server.errors import ConfigurationError

# Strategies that need each update on its own: impossible when the server
# only ever holds the sum.
NEEDS_INDIVIDUAL_UPDATES = ("median", "trimmed_mean")


@dataclass(frozen=True)
class SecureAggregationConfig:
    enabled: bool = False
    # The largest fraction of a round's devices that may drop out at any
    # stage; the threshold follows. Below 0.5 (see fedge.secagg.params).
    dropout: float = 0.3
    # Each value of an update is clipped to [-clip, clip] on the device.
    clip: float = 0.5
    # Each stage after key advertising (sharing, masked upload, unmasking)
    # closes when every device of the stage before answered, or after this.
    stage_s: float = 10.0

    def validate(self, strategy: str) -> None:
        try:
            check_declared(self.dropout, self.clip)
        except SecAggError as exc:
            raise ConfigurationError(f"secure_aggregation: {exc}") from exc
        if not self.stage_s > 0:
            raise ConfigurationError("secure_aggregation.stage_s must be > 0")
        if self.enabled and strategy in NEEDS_INDIVIDUAL_UPDATES:
            raise ConfigurationError(
                f"secure aggregation gives the server only the sum of the updates: "
                f"strategy {strategy!r} needs each update; use a weighted-mean strategy "
                f"(fedavg, fedavgm, fedadam)"
            )


def build_secure_config(raw: Any) -> SecureAggregationConfig:
    """A ``[secure_aggregation]`` table, a bare boolean (on with the
    defaults), or a ready record."""
    if isinstance(raw, SecureAggregationConfig):
        return raw
    if isinstance(raw, bool | str):  # FEDGE_SECURE_AGGREGATION=true, --secure-aggregation
        return SecureAggregationConfig(enabled=coerce("secure_aggregation", "bool", raw))
    if not isinstance(raw, Mapping):
        raise ConfigurationError("secure_aggregation must be a table or true/false")
    fields = {f.name: f for f in dataclasses.fields(SecureAggregationConfig)}
    unknown = set(raw) - set(fields)
    if unknown:
        raise ConfigurationError(f"unknown secure_aggregation keys: {', '.join(sorted(unknown))}")
    return SecureAggregationConfig(**{k: coerce(k, fields[k].type, v) for k, v in raw.items()})
