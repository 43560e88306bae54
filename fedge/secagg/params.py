"""A secure round's parameters, all derived from what the operator declares.

The operator declares the largest fraction of devices that may drop out
and the clipping range; the round's size and the model's length are
known when the key-advertising stage closes. From these:

* ``neighbours`` (k): each device masks with, and secret-shares among, k
  others in a sparse random graph. SecAgg+ (Bell et al. 2020) shows
  O(log n) suffice; fedge takes ~3 log2(n), rounded up to an even number
  (the ring construction of :mod:`fedge.secagg.graph`), and the complete
  graph when that is all the others.
* ``threshold`` (t): shares needed to rebuild a secret. t > k/2 always, so
  a server that asks some neighbours for a device's key and the others for
  its seed can never gather t of both; and t <= k - floor(dropout * k), so
  the declared dropout leaves enough neighbours.
* ``bits``: each clipped value becomes an integer below 2^bits, and
  ``n * (2^bits - 1) < 2^32``: the sum of n inputs never wraps modulo 2^32.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from fedge.secagg.errors import SecAggError

MODULUS_BITS = 32
MIN_DEVICES = 3
MAX_BITS = 24  # finer than float32's mantissa buys nothing


@dataclass(frozen=True)
class SecAggParams:
    devices: int  # n: how many advertised keys
    neighbours: int  # k
    threshold: int  # t
    bits: int  # per quantised value
    clip: float  # every value is clipped to [-clip, clip]
    length: int  # values in one input
    dropout: float  # the declared fraction

    @classmethod
    def choose(cls, devices: int, dropout: float, length: int, clip: float) -> SecAggParams:
        check_declared(dropout, clip)
        if devices < MIN_DEVICES:
            raise SecAggError(
                f"a secure round needs at least {MIN_DEVICES} devices, {devices} advertised keys"
            )
        if length < 1:
            raise SecAggError("the input must hold at least one value")
        wanted = 2 * math.ceil(1.5 * math.log2(devices))
        neighbours = devices - 1 if wanted >= devices - 1 else wanted
        threshold = max(neighbours // 2 + 1, neighbours - math.floor(dropout * neighbours))
        bits = min(MAX_BITS, MODULUS_BITS - math.ceil(math.log2(devices)))
        return cls(devices, neighbours, threshold, bits, clip, length, dropout)

    @property
    def levels(self) -> int:
        """The largest quantised value."""
        return (1 << self.bits) - 1

    def describe(self) -> str:
        return (
            f"secure aggregation: {self.devices} devices, {self.neighbours} neighbours each, "
            f"threshold {self.threshold}, {self.bits} bits per value in [-{self.clip:g}, "
            f"{self.clip:g}], declared dropout {self.dropout:g}"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Any) -> SecAggParams:
        fields = {"devices", "neighbours", "threshold", "bits", "clip", "length", "dropout"}
        if not isinstance(raw, dict) or set(raw) != fields:
            raise SecAggError(f"params must have exactly the fields {sorted(fields)}")
        ints = ("devices", "neighbours", "threshold", "bits", "length")
        if any(type(raw[name]) is not int for name in ints):
            raise SecAggError(f"params {', '.join(ints)} must be integers")
        if any(not isinstance(raw[name], int | float) for name in ("clip", "dropout")):
            raise SecAggError("params clip and dropout must be numbers")
        expected = cls.choose(raw["devices"], float(raw["dropout"]), raw["length"], raw["clip"])
        if expected != cls(**{**raw, "clip": float(raw["clip"]), "dropout": float(raw["dropout"])}):
            # A device recomputes them: a server cannot lower the threshold.
            raise SecAggError("params do not follow from the round's size and dropout")
        return expected


def check_declared(dropout: float, clip: float) -> None:
    """What the operator declares; a ConfigError-worthy message otherwise."""
    if not 0.0 <= dropout < 0.5:
        raise SecAggError(f"the declared dropout must be in [0, 0.5), not {dropout}")
    if not (math.isfinite(clip) and clip > 0):
        raise SecAggError(f"the clipping range must be a positive number, not {clip}")
