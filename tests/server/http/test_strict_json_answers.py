"""Answers are strict JSON: a non-finite float goes out as null (the server's
JSON provider encodes as is first and copies with nulls only when needed)."""

from __future__ import annotations

import json

from flask import Flask

from fedge.server.http.app import StrictJSONProvider


def test_non_finite_floats_are_sent_as_null() -> None:
    provider = StrictJSONProvider(Flask("strict"))
    text = provider.dumps({"loss": float("nan"), "norms": [1.5, float("inf"), -float("inf")]})
    assert json.loads(text) == {"loss": None, "norms": [1.5, None, None]}
    assert "NaN" not in text and "Infinity" not in text


def test_finite_answers_are_encoded_unchanged() -> None:
    provider = StrictJSONProvider(Flask("strict"))
    answer = {"round": 3, "metrics": {"loss": 0.25}, "devices": ["d-1"], "ok": True, "none": None}
    assert json.loads(provider.dumps(answer)) == answer
