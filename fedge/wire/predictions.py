"""What a model predicted on a device's examples, numbers only: a histogram
of the predicted classes (a classifier) or the 10/25/50/75/90 % points of
its outputs (a regressor). Health reports carry it for the live model
(:mod:`fedge.wire.health`), canary evaluations for the candidate
(:mod:`fedge.wire.canary`, issue 23: the candidate's numbers are each
device's health baseline). One validation for both; each wire names its
own error class.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

from fedge.errors import FedgeError

MAX_CLASSES = 1000
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
MAX_COUNT = 10_000_000  # predictions in one histogram (as many as examples in a report)
MAX_VALUE = 1e9


@dataclass(frozen=True)
class Predictions:
    """Exactly one of ``histogram`` and ``quantiles``."""

    histogram: tuple[int, ...] | None
    quantiles: tuple[float, ...] | None

    def to_json(self) -> dict[str, Any]:
        return {
            "histogram": list(self.histogram) if self.histogram is not None else None,
            "quantiles": list(self.quantiles) if self.quantiles is not None else None,
        }

    @classmethod
    def from_json(cls, raw: Any, error: type[FedgeError], name: str) -> Predictions:
        if not isinstance(raw, dict) or set(raw) != {"histogram", "quantiles"}:
            raise error(f"{name} holds exactly histogram and quantiles")
        return cls(*pair(raw["histogram"], raw["quantiles"], error, name))


def pair(
    histogram: Any, quantiles: Any, error: type[FedgeError], name: str = ""
) -> tuple[tuple[int, ...] | None, tuple[float, ...] | None]:
    """A validated histogram or quantiles (the other None), or ``error``."""
    prefix = f"{name}." if name else ""
    if (histogram is None) == (quantiles is None):
        raise error(f"give exactly one of {prefix}histogram (a classifier) and {prefix}quantiles")
    if histogram is not None:
        return _histogram(histogram, error, prefix), None
    return None, _quantiles(quantiles, error, prefix)


def _histogram(raw: Any, error: type[FedgeError], prefix: str) -> tuple[int, ...]:
    if not isinstance(raw, list) or not 2 <= len(raw) <= MAX_CLASSES:
        raise error(f"{prefix}histogram is a list of 2 to {MAX_CLASSES} counts")
    counts = []
    for count in raw:
        if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= MAX_COUNT:
            raise error(f"{prefix}histogram[] must be an integer from 0 to {MAX_COUNT}")
        counts.append(count)
    if not 1 <= sum(counts) <= MAX_COUNT:
        raise error(f"{prefix}histogram counts 1 to {MAX_COUNT} predictions")
    return tuple(counts)


def _quantiles(raw: Any, error: type[FedgeError], prefix: str) -> tuple[float, ...]:
    if not isinstance(raw, list) or len(raw) != len(QUANTILES):
        raise error(f"{prefix}quantiles is a list of {len(QUANTILES)} numbers (10/25/50/75/90 %)")
    values = []
    for value in raw:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise error(f"{prefix}quantiles[] must be a number")
        if not (math.isfinite(value) and -MAX_VALUE <= value <= MAX_VALUE):
            raise error(f"{prefix}quantiles[] must be a finite number from -1e+09 to 1e+09")
        values.append(float(value))
    if any(b < a for a, b in itertools.pairwise(values)):
        raise error(f"{prefix}quantiles must not decrease")
    return tuple(values)
