"""The per-runtime parity rule (:mod:`fedge.server.releases.canary.parity`)
and the evaluation's optional ``runtime`` and ``parity`` on the wire."""

from __future__ import annotations

from typing import Any

import pytest

from fedge.server.releases.canary.parity import MAX_ERROR, MIN_AGREEMENT, by_runtime, failed, fails
from fedge.wire.canary import CanaryWireError, Evaluation, Parity

GOOD = Parity(1e-6, 1.0, 32)
BROKEN = Parity(0.5, 0.3, 32)


def evaluation(runtime: str | None, parity: Parity | None) -> Evaluation:
    scores = {"loss": 0.4, "accuracy": 0.9}
    return Evaluation(1, "accuracy", scores, scores, 20, 0.3, "candidate", runtime, parity)


def test_one_report_fails_on_either_bound() -> None:
    assert not fails(Parity(MAX_ERROR, MIN_AGREEMENT, 10))
    assert fails(Parity(MAX_ERROR * 1.01, 1.0, 10))
    assert fails(Parity(0.0, MIN_AGREEMENT - 0.01, 10))


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
    found = by_runtime([evaluation("tfjs-wasm", p) for p in reports])["tfjs-wasm"]
    assert found.ok is not blocked
    assert (found.devices, found.failing) == (len(reports), reports.count(BROKEN))
    assert failed([evaluation("tfjs-wasm", p) for p in reports]) == (
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
    found = by_runtime(evaluations)
    assert set(found) == {"tfjs-webgl", "tflite"}
    assert found["tflite"].devices == 1 and found["tflite"].ok
    assert failed(evaluations) == {"tfjs-webgl"}


def test_the_numbers_shown_are_medians_a_liar_cannot_move() -> None:
    reports = [GOOD, GOOD, Parity(1e9, 0.0, 1)]
    found = by_runtime([evaluation("tflite", p) for p in reports])["tflite"]
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
