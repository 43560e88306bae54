"""The per-runtime parity rule (:mod:`fedge.server.releases.canary.parity`)
and the evaluation's optional ``runtime`` and ``parity`` on the wire."""

from __future__ import annotations

from typing import Any

import pytest

from fedge.server.config import load_config
from fedge.server.errors import ConfigurationError
from fedge.server.parity_rule import ParityRule
from fedge.server.releases.canary.parity import by_runtime, failed, fails
from fedge.server.releases.canary.reports import policy_of
from fedge.wire.canary import CanaryWireError, Evaluation, Parity

RULE = ParityRule()

GOOD = Parity(1e-6, 1.0, 32)
BROKEN = Parity(0.5, 0.3, 32)


def evaluation(runtime: str | None, parity: Parity | None) -> Evaluation:
    scores = {"loss": 0.4, "accuracy": 0.9}
    return Evaluation(1, "accuracy", scores, scores, 20, 0.3, "candidate", runtime, parity)


def test_one_report_fails_on_either_bound() -> None:
    assert (RULE.max_error, RULE.min_agreement, RULE.min_devices) == (0.05, 0.95, 2)
    assert not fails(Parity(RULE.max_error, RULE.min_agreement, 10), RULE)
    assert fails(Parity(RULE.max_error * 1.01, 1.0, 10), RULE)
    assert fails(Parity(0.0, RULE.min_agreement - 0.01, 10), RULE)


def test_the_thresholds_are_settings() -> None:
    config = load_config(
        overrides={
            "canary_parity_max_error": 0.5,
            "canary_parity_min_agreement": 0.2,
            "canary_parity_min_devices": 3,
        }
    )
    rule = policy_of(config).parity
    assert rule == ParityRule(0.5, 0.2, 3)
    assert not fails(BROKEN, rule)  # 0.5 error and 0.3 agreement pass the looser rule
    worse = Parity(0.6, 0.1, 32)
    two = [evaluation("tflite", worse)] * 2
    assert failed(two, RULE) == {"tflite"}
    assert failed(two, rule) == set()  # three failing devices needed
    assert failed([*two, evaluation("tflite", worse)], rule) == {"tflite"}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("canary_parity_max_error", -0.1),
        ("canary_parity_max_error", float("inf")),
        ("canary_parity_max_error", float("nan")),
        ("canary_parity_min_agreement", 1.5),
        ("canary_parity_min_agreement", -0.01),
        ("canary_parity_min_devices", 0),
    ],
)
def test_bad_thresholds_are_refused_naming_the_key(key: str, value: float) -> None:
    with pytest.raises(ConfigurationError, match=key):
        load_config(overrides={key: value})


@pytest.mark.parametrize(
    ("reports", "blocked"),
    [
        ([BROKEN], False),  # one device alone: perhaps a liar
        ([BROKEN, GOOD, GOOD, GOOD], False),  # a lying minority
        ([BROKEN, BROKEN, GOOD, GOOD], False),  # half is no majority
        ([BROKEN, BROKEN], True),
        ([BROKEN, BROKEN, GOOD], True),
        ([GOOD] * 5, False),
    ],
)
def test_a_runtime_fails_on_two_devices_that_are_a_majority(
    reports: list[Parity], blocked: bool
) -> None:
    found = by_runtime([evaluation("tfjs-wasm", p) for p in reports], RULE)["tfjs-wasm"]
    assert found.ok is not blocked
    assert (found.devices, found.failing) == (len(reports), reports.count(BROKEN))
    assert failed([evaluation("tfjs-wasm", p) for p in reports], RULE) == (
        {"tfjs-wasm"} if blocked else set()
    )


def test_runtimes_are_judged_apart_and_reports_without_parity_are_left_out() -> None:
    evaluations = [
        evaluation("tfjs-webgl", BROKEN),
        evaluation("tfjs-webgl", BROKEN),
        evaluation("tflite", GOOD),
        evaluation("tflite", None),
        evaluation(None, None),
    ]
    found = by_runtime(evaluations, RULE)
    assert set(found) == {"tfjs-webgl", "tflite"}
    assert found["tflite"].devices == 1 and found["tflite"].ok
    assert failed(evaluations, RULE) == {"tfjs-webgl"}


def test_the_numbers_shown_are_medians_a_liar_cannot_move() -> None:
    reports = [GOOD, GOOD, Parity(1e9, 0.0, 1)]
    found = by_runtime([evaluation("tflite", p) for p in reports], RULE)["tflite"]
    assert (found.max_error, found.agreement) == (1e-6, 1.0)


def base() -> dict[str, Any]:
    return evaluation(None, None).to_json()


def test_the_optional_fields_round_trip_and_are_left_out_when_unset() -> None:
    assert "runtime" not in base() and "parity" not in base()
    raw = {
        **base(),
        "runtime": "tfjs-webgl",
        "parity": {"max_abs_error": 0, "top1_agreement": 1, "samples": 8},
    }
    parsed = Evaluation.from_json(raw)
    assert parsed.runtime == "tfjs-webgl"
    assert parsed.parity == Parity(0.0, 1.0, 8)
    assert Evaluation.from_json(parsed.to_json()) == parsed
    assert Evaluation.from_json({**base(), "runtime": "tflite"}).parity is None


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"runtime": "Web GL"}, "runtime"),
        (
            {"runtime": None, "parity": {"max_abs_error": 0, "top1_agreement": 1, "samples": 1}},
            "parity",
        ),
        (
            {
                "runtime": "tflite",
                "parity": {"max_abs_error": float("inf"), "top1_agreement": 1, "samples": 1},
            },
            "max_abs_error",
        ),
        (
            {
                "runtime": "tflite",
                "parity": {"max_abs_error": 0, "top1_agreement": -0.1, "samples": 1},
            },
            "top1_agreement",
        ),
        (
            {
                "runtime": "tflite",
                "parity": {"max_abs_error": 0, "top1_agreement": 1, "samples": 10_001},
            },
            "samples",
        ),
        (
            {
                "runtime": "tflite",
                "parity": {"max_abs_error": "0", "top1_agreement": 1, "samples": 1},
            },
            "max_abs_error",
        ),
        ({"runtime": "tflite", "parity": None, "extra": 1}, "extra"),
    ],
)
def test_bad_runtime_or_parity_is_refused_naming_the_field(
    change: dict[str, Any], named: str
) -> None:
    with pytest.raises(CanaryWireError, match=named):
        Evaluation.from_json({**base(), **change})
