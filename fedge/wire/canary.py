"""Canary evaluations on the wire: one codec for the server and the devices.

A device in a candidate release's slice runs the candidate and the live
release (the baseline) on its own held-out data and sends the numbers,
never the data (``POST /v1/releases/{version}/evaluations``)::

    {"baseline_version": 1, "metric": "accuracy",
     "candidate": {"loss": 0.31, "accuracy": 0.90},
     "baseline": {"loss": 0.35, "accuracy": 0.88},
     "num_examples": 40, "latency_ms": 0.8, "using": "candidate"}

``metric`` is the model's headline metric (:attr:`fedge.task.objective.Objective.metric`);
``candidate`` and ``baseline`` hold exactly ``loss`` and that metric;
``latency_ms`` is the candidate's inference time per example; ``using``
says which model the device now serves. Optional (issue 23): ``runtime``,
the runtime the device runs the model on (``tflite``, ``tfjs-webgl``,
``tfjs-wasm``, ``tfjs-cpu``...), and ``parity``, how the candidate's outputs
on that runtime compare with the source model's on the bundle's golden
inputs (:class:`Parity`); ``predictions``, what the candidate predicted on
the held-out examples (:class:`fedge.wire.predictions.Predictions`: a
histogram of classes or output quantiles), the device's baseline for the
live model's health once the candidate is live. :class:`CanarySummary` is what the
server made of the reports so far. ``from_json`` refuses anything else
with :class:`CanaryWireError`, naming the field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from fedge.errors import FedgeError
from fedge.wire.predictions import Predictions
from fedge.wire.strict_json import field_mismatch

# Whether a higher value of a metric is better, by its name.
HIGHER_IS_BETTER = {"accuracy": True, "mae": False, "loss": False}
USING = ("candidate", "baseline", "personal")
DECISIONS = ("promote", "rollback")
MAX_EXAMPLES = 10_000_000
MAX_SCORE = 1e9  # a loss past this is no measurement (and sums of them stay finite)
MAX_LATENCY_MS = 3_600_000.0
_FIELDS = (
    "baseline_version",
    "metric",
    "candidate",
    "baseline",
    "num_examples",
    "latency_ms",
    "using",
)
_OPTIONAL = ("runtime", "parity", "predictions")
MAX_PARITY_SAMPLES = 10_000
# The runtimes a device may name (canary parity, health reports): a fixed
# list, so the series and the parity shown per runtime stay few.
RUNTIMES = ("tflite", "tfjs", "tfjs-cpu", "tfjs-wasm", "tfjs-webgl", "coreml", "keras")


class CanaryWireError(FedgeError):
    """An evaluation that is not what the protocol says."""


@dataclass(frozen=True)
class Parity:
    """A device's run of the bundle's golden inputs on its own runtime:
    the largest absolute difference from the source model's outputs, the
    share of samples whose top-1 class agrees, and how many samples."""

    max_abs_error: float
    top1_agreement: float
    samples: int

    @classmethod
    def from_json(cls, raw: Any) -> Parity:
        names = set(cls.__dataclass_fields__)
        if not isinstance(raw, dict) or set(raw) != names:
            raise CanaryWireError(f"parity holds exactly {', '.join(sorted(names))}")
        return cls(
            max_abs_error=_number(raw["max_abs_error"], "parity.max_abs_error", MAX_SCORE),
            top1_agreement=_number(raw["top1_agreement"], "parity.top1_agreement", 1.0),
            samples=_integer(raw["samples"], "parity.samples", 1, MAX_PARITY_SAMPLES),
        )


def runtime_name(raw: Any) -> str:
    """A runtime's name as the wire allows it, or :class:`CanaryWireError`."""
    if not isinstance(raw, str) or raw not in RUNTIMES:
        raise CanaryWireError(f"runtime is one of {', '.join(RUNTIMES)}")
    return raw


@dataclass(frozen=True)
class Evaluation:
    """One device's evaluation of a candidate against the live release."""

    baseline_version: int
    metric: str
    candidate: dict[str, float]
    baseline: dict[str, float]
    num_examples: int
    latency_ms: float
    using: str
    runtime: str | None = None
    parity: Parity | None = None
    predictions: Predictions | None = None

    def to_json(self) -> dict[str, Any]:
        """The optional fields only when set (older servers refuse unknown ones)."""
        raw = asdict(self)
        if self.predictions is not None:
            raw["predictions"] = self.predictions.to_json()
        for name in _OPTIONAL:
            if raw[name] is None:
                del raw[name]
        return raw

    @classmethod
    def from_json(cls, raw: Any) -> Evaluation:
        if not isinstance(raw, dict):
            raise CanaryWireError("an evaluation is a JSON object")
        mismatch = field_mismatch(raw, _FIELDS, _OPTIONAL)
        if mismatch is not None:
            raise CanaryWireError(
                f"an evaluation has {', '.join(_FIELDS)} (and optionally "
                f"{', '.join(_OPTIONAL)}); {mismatch}"
            )
        metric = raw["metric"]
        if not isinstance(metric, str) or metric not in HIGHER_IS_BETTER:
            raise CanaryWireError(f"metric is one of {', '.join(HIGHER_IS_BETTER)}")
        if not isinstance(raw["using"], str) or raw["using"] not in USING:
            raise CanaryWireError(f"using is one of {', '.join(USING)}")
        runtime = raw.get("runtime")
        parity = raw.get("parity")
        predictions = raw.get("predictions")
        if parity is not None and runtime is None:
            raise CanaryWireError("parity needs the runtime it was measured on")
        if predictions is not None and runtime is None:
            raise CanaryWireError("predictions need the runtime they were made on")
        return cls(
            baseline_version=_integer(raw["baseline_version"], "baseline_version", 1, 2**62),
            metric=metric,
            candidate=_scores(raw["candidate"], metric, "candidate"),
            baseline=_scores(raw["baseline"], metric, "baseline"),
            num_examples=_integer(raw["num_examples"], "num_examples", 1, MAX_EXAMPLES),
            latency_ms=_number(raw["latency_ms"], "latency_ms", MAX_LATENCY_MS),
            using=raw["using"],
            runtime=None if runtime is None else runtime_name(runtime),
            parity=None if parity is None else Parity.from_json(parity),
            predictions=None
            if predictions is None
            else Predictions.from_json(predictions, CanaryWireError, "predictions"),
        )


@dataclass(frozen=True)
class EvaluationReceipt:
    """The server's answer to a report; ``decided``: the decision this very
    report made (``promote`` or ``rollback``), else None."""

    version: int
    device_id: str
    received_at: float
    decided: str | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Any) -> EvaluationReceipt:
        if not isinstance(raw, dict) or set(raw) != set(cls.__dataclass_fields__):
            raise CanaryWireError(f"not an evaluation receipt: {raw!r}"[:300])
        if raw["decided"] not in (None, *DECISIONS):
            raise CanaryWireError(f"decided is one of {', '.join(DECISIONS)} or null")
        return cls(**raw)


@dataclass(frozen=True)
class CanarySummary:
    """What the devices' reports on one candidate add up to.

    ``reports``: every report stored; ``devices``: those counted (devices
    that existed before the candidate and have a history), one weight
    each. ``num_examples``: the examples the counted devices say they
    used (evidence, never a weight). ``candidate`` and ``baseline``: the
    counted devices' mean ``loss`` and ``metric`` (None before any).
    ``estimate``: the mean paired difference, candidate minus live,
    positive when the candidate is better; ``interval``: its confidence
    sequence [lower, upper] (valid whenever it is looked at);
    ``statistic``: the e-values of the two sequential tests (``promote``:
    against "worse by the margin", ``rollback``: against "not worse"),
    each deciding at its ``threshold`` (1/alpha, 1/beta). ``outcome``:
    ``promote``, ``rollback`` or ``keep collecting``, with its ``reason``;
    ``decision``: None while pending."""

    metric: str | None
    higher_is_better: bool | None
    reports: int
    num_examples: int
    candidate: dict[str, float] | None
    baseline: dict[str, float] | None
    using: dict[str, int]
    min_reports: int
    margin: float
    decision: str | None
    decided_at: float | None
    devices: int = 0
    estimate: float | None = None
    interval: list[float] | None = None
    statistic: dict[str, float] | None = None
    threshold: dict[str, float] | None = None
    alpha: float | None = None
    beta: float | None = None
    bound: float | None = None
    outcome: str | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Any) -> CanarySummary:
        if not isinstance(raw, dict) or set(raw) != set(cls.__dataclass_fields__):
            raise CanaryWireError(f"not a canary summary: {raw!r}"[:300])
        try:
            return cls(**raw)
        except TypeError as exc:
            raise CanaryWireError(f"not a canary summary: {exc}") from exc


def _scores(raw: Any, metric: str, name: str) -> dict[str, float]:
    names = {"loss", metric}
    if not isinstance(raw, dict) or set(raw) != names:
        raise CanaryWireError(f"{name} holds exactly {' and '.join(sorted(names))}")
    upper = 1.0 if metric == "accuracy" else MAX_SCORE
    scores = {"loss": _number(raw["loss"], f"{name}.loss", MAX_SCORE)}
    scores[metric] = _number(raw[metric], f"{name}.{metric}", upper)
    return scores


def _number(value: Any, name: str, upper: float) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise CanaryWireError(f"{name} must be a number")
    if not (math.isfinite(value) and 0 <= value <= upper):
        raise CanaryWireError(f"{name} must be a finite number from 0 to {upper:g}")
    return float(value)


def _integer(value: Any, name: str, lower: int, upper: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lower <= value <= upper:
        raise CanaryWireError(f"{name} must be an integer from {lower} to {upper}")
    return value


def describe(canary: Mapping[str, Any] | None) -> str:
    """One line of what a canary summary (as JSON) shows, for the CLI, the
    simulator's table and ``fedge demo``: the outcome, counted devices and
    examples, the mean difference and its interval, and the reason."""
    if not canary:
        return "no canary"
    outcome = canary.get("decision") or canary.get("outcome") or "keep collecting"
    devices, reports = canary.get("devices", 0), canary.get("reports", 0)
    counts = f"{devices} devices ({canary.get('num_examples', 0)} examples, {reports} reports)"
    estimate, interval = canary.get("estimate"), canary.get("interval")
    difference = ""
    if estimate is not None:
        difference = f", {canary.get('metric') or 'metric'} difference {estimate:+.3f}"
        if interval:
            difference += f" [{interval[0]:+.3f}, {interval[1]:+.3f}]"
    reason = canary.get("reason")
    head = outcome if outcome != "keep collecting" else "not enough evidence yet"
    if reason and reason.startswith(head):
        reason = reason[len(head) :].lstrip(": ")
    tail = f"; {reason}" if reason else ""
    return f"{head}: {counts}{difference}{tail}"


def describe_parity(parity: Mapping[str, Any] | None) -> str:
    """Parity per runtime (``GET /v1/releases/{v}``'s ``parity``, as JSON) in
    one cell: ``tflite ok 1.00 / tfjs-wasm FAIL 0.41``, each runtime's verdict
    and median top-1 agreement; "-" when no device reported parity."""
    if not parity:
        return "-"
    return " / ".join(
        f"{runtime} {'ok' if shown.get('ok') else 'FAIL'} {float(shown.get('agreement', 0.0)):.2f}"
        for runtime, shown in sorted(parity.items())
    )


def parity_lines(parity: Mapping[str, Any] | None) -> list[str]:
    """The full parity block of ``fedge release VERSION``: per runtime, the
    verdict, its reporting and failing devices and the medians."""
    if not parity:
        return ["parity: no device reported parity on its runtime"]
    lines = ["parity (medians over each runtime's counted devices):"]
    for runtime, shown in sorted(parity.items()):
        verdict = "ok" if shown.get("ok") else "FAIL: kept off this runtime's devices"
        lines.append(
            f"  {runtime}: {verdict}; {shown.get('failing', 0)} of {shown.get('devices', 0)} "
            f"devices failing, max abs error {float(shown.get('max_error', 0.0)):.3g}, "
            f"top-1 agreement {float(shown.get('agreement', 0.0)):.3f}"
        )
    return lines
