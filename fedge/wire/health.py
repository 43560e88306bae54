"""The live model's health on the wire: one codec for the server and the devices.

A device serving a release reports, once per window the server sets
(``window_s``; the receipt says when the next window opens), how the
model did on the examples it labelled since its last report, and what it
predicted, numbers only (``POST /v1/releases/{version}/health``)::

    {"metric": "accuracy", "loss": 0.31, "value": 0.90, "num_examples": 24,
     "runtime": "tflite", "histogram": [3, 2, 0, 4, 1, 2, 5, 3, 2, 2],
     "quantiles": null}

``value`` is the model's headline metric; ``histogram`` counts the
predicted classes (one count per class of the model's output), and
``quantiles`` the 10/25/50/75/90 % points of a regressor's outputs:
exactly one of the two is given. :class:`HealthReport.from_json` refuses
anything else with :class:`HealthWireError`, naming the field.

:class:`HealthWindow` is what the server made of one window's reports on
one runtime (medians over devices, and how many devices vote "drifted"), and
:class:`HealthSeries` the release's series, as ``GET`` answers it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from fedge.errors import FedgeError
from fedge.wire.canary import HIGHER_IS_BETTER, MAX_EXAMPLES, MAX_SCORE, RUNTIMES
from fedge.wire.predictions import MAX_CLASSES, QUANTILES, pair
from fedge.wire.strict_json import field_mismatch

__all__ = [
    "MAX_CLASSES",
    "QUANTILES",
    "HealthReceipt",
    "HealthReport",
    "HealthSeries",
    "HealthWindow",
    "HealthWireError",
]
_FIELDS = ("metric", "loss", "value", "num_examples", "runtime", "histogram", "quantiles")


class HealthWireError(FedgeError):
    """A health report that is not what the protocol says."""


@dataclass(frozen=True)
class HealthReport:
    """One device's numbers on the live model for one window."""

    metric: str
    loss: float
    value: float
    num_examples: int
    runtime: str
    histogram: tuple[int, ...] | None
    quantiles: tuple[float, ...] | None

    def to_json(self) -> dict[str, Any]:
        raw = asdict(self)
        raw["histogram"] = list(self.histogram) if self.histogram is not None else None
        raw["quantiles"] = list(self.quantiles) if self.quantiles is not None else None
        return raw

    @classmethod
    def from_json(cls, raw: Any) -> HealthReport:
        if not isinstance(raw, dict):
            raise HealthWireError("a health report is a JSON object")
        mismatch = field_mismatch(raw, _FIELDS)
        if mismatch is not None:
            raise HealthWireError(f"a health report has exactly {', '.join(_FIELDS)}; {mismatch}")
        metric = raw["metric"]
        if not isinstance(metric, str) or metric not in HIGHER_IS_BETTER:
            raise HealthWireError(f"metric is one of {', '.join(HIGHER_IS_BETTER)}")
        runtime = raw["runtime"]
        if not isinstance(runtime, str) or runtime not in RUNTIMES:
            raise HealthWireError(f"runtime is one of {', '.join(RUNTIMES)}")
        histogram, quantiles = pair(raw["histogram"], raw["quantiles"], HealthWireError)
        upper = 1.0 if metric == "accuracy" else MAX_SCORE
        return cls(
            metric=metric,
            loss=_number(raw["loss"], "loss", 0.0, MAX_SCORE),
            value=_number(raw["value"], "value", 0.0, upper),
            num_examples=_integer(raw["num_examples"], "num_examples", 1, MAX_EXAMPLES),
            runtime=runtime,
            histogram=histogram,
            quantiles=quantiles,
        )


@dataclass(frozen=True)
class HealthReceipt:
    """The server's answer to a report: the window it counts in, and when
    the next one opens (the device's pace)."""

    version: int
    device_id: str
    window: int
    received_at: float
    next_report_at: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Any) -> HealthReceipt:
        if not isinstance(raw, dict) or set(raw) != set(cls.__dataclass_fields__):
            raise HealthWireError(f"not a health receipt: {raw!r}"[:300])
        try:
            return cls(**raw)
        except TypeError as exc:
            raise HealthWireError(f"not a health receipt: {exc}") from exc


@dataclass(frozen=True)
class HealthWindow:
    """One judged window of one runtime. ``loss`` and ``value``: medians of
    the devices' numbers; ``distribution``: the per-class median of their
    prediction shares (renormalised), or the medians of their quantiles.
    ``distance`` (total variation, or the largest quantile shift in the
    baseline's interquartile ranges) and ``drop`` (how much worse the metric
    is) are against the baseline window (None until there is one);
    ``voters``: the devices that also reported in the baseline window;
    ``votes``: how many of them moved from their own baseline report beyond
    the bounds (:mod:`fedge.server.releases.health.drift`); ``alert``: more
    than half of at least ``min_devices`` voters."""

    version: int
    runtime: str
    window: int
    start: float
    metric: str
    devices: int
    loss: float
    value: float
    distribution: tuple[float, ...]
    baseline: bool
    distance: float | None
    drop: float | None
    voters: int
    votes: int
    alert: bool

    def to_json(self) -> dict[str, Any]:
        raw = asdict(self)
        raw["distribution"] = list(self.distribution)
        return raw

    @classmethod
    def from_json(cls, raw: Any) -> HealthWindow:
        if not isinstance(raw, dict) or set(raw) != set(cls.__dataclass_fields__):
            raise HealthWireError(f"not a health window: {raw!r}"[:300])
        try:
            return cls(**{**raw, "distribution": tuple(raw["distribution"])})
        except TypeError as exc:
            raise HealthWireError(f"not a health window: {exc}") from exc


@dataclass(frozen=True)
class HealthSeries:
    """A release's health: the settings that judge it and its judged windows, oldest first."""

    version: int
    window_s: float
    min_devices: int
    margin: float
    max_distance: float
    open_window: int
    open_reports: int
    windows: tuple[HealthWindow, ...]

    def to_json(self) -> dict[str, Any]:
        raw = asdict(self)
        raw["windows"] = [w.to_json() for w in self.windows]
        return raw

    @classmethod
    def from_json(cls, raw: Any) -> HealthSeries:
        if not isinstance(raw, dict) or set(raw) != set(cls.__dataclass_fields__):
            raise HealthWireError(f"not a health series: {raw!r}"[:300])
        windows = tuple(HealthWindow.from_json(w) for w in raw["windows"])
        try:
            return cls(**{**raw, "windows": windows})
        except TypeError as exc:
            raise HealthWireError(f"not a health series: {exc}") from exc


def _number(value: Any, name: str, lower: float, upper: float) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise HealthWireError(f"{name} must be a number")
    if not (math.isfinite(value) and lower <= value <= upper):
        raise HealthWireError(f"{name} must be a finite number from {lower:g} to {upper:g}")
    return float(value)


def _integer(value: Any, name: str, lower: int, upper: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lower <= value <= upper:
        raise HealthWireError(f"{name} must be an integer from {lower} to {upper}")
    return value
