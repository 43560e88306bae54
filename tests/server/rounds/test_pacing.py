"""Pace steering: a refused device is told the round to come back in, so a
large fleet does not ask in every round; and the hint as the HTTP API
documents it."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
import yaml

from fedge.server.rounds.admission import PACE, paced_round
from fedge.server.storage.devices import Conditions
from tests.helpers.live_server import running
from tests.server.helpers import auth
from tests.server.parts import PartsOn

SPEC_PATH = Path(__file__).resolve().parents[3] / "server" / "openapi.yaml"


def test_a_lone_device_is_told_the_next_round() -> None:
    assert paced_round(7, "device-a", competing=1, slots=10) == 8


def test_the_refused_are_spread_evenly_over_the_coming_rounds() -> None:
    # 1,000 devices compete for 100 seats: each should ask once every
    # 1000 / (PACE x 100) = 5 rounds, so the waits are spread over 1..9.
    waits = [paced_round(10, f"device-{i}", 1000, 100) - 10 for i in range(5000)]

    assert PACE == 2
    assert set(waits) == set(range(1, 10))
    assert abs(statistics.mean(waits) - 5) < 0.2
    # Stable: the same device in the same round is told the same round.
    assert paced_round(10, "device-3", 1000, 100) == paced_round(10, "device-3", 1000, 100)


def test_least_served_devices_come_back_sooner_than_served_ones(
    parts_on: PartsOn, tmp_path: Path
) -> None:
    # 2 seats; 10 devices that never took part, 90 that took part once. The
    # fair sampler wants the 10: they are spread over 10 / (2 x 2) x 2 - 1
    # = 4 rounds, the served over 100 / (2 x 2) x 2 - 1 = 49.
    parts = parts_on(tmp_path, rounds={"target_participants": 2, "deadline_s": 600.0})
    fresh = [parts.device(participations=0) for _ in range(10)]
    served = [parts.device(participations=1) for _ in range(90)]
    now = time.time()
    for device in fresh + served:  # all of them check in: all active
        parts.selector.request_task(device, Conditions(), now=now)

    later = now + 1.0  # past the count's refresh interval
    answers = {
        d.id: parts.selector.request_task(d, Conditions(), now=later) for d in fresh + served
    }

    seated = [d for d in fresh if answers[d.id].task is not None]
    fresh_rounds = [answers[d.id].retry_round for d in fresh if d not in seated]
    served_rounds = [answers[d.id].retry_round for d in served]
    assert len(seated) == 2
    assert all(r is not None and 2 <= r <= 5 for r in fresh_rounds)
    assert all(r is not None and 2 <= r <= 50 for r in served_rounds)
    assert max(r for r in served_rounds if r is not None) > 5


def test_a_refused_device_is_told_the_round_to_come_back_in_over_http(
    tiny_keras: Path, tmp_path: Path
) -> None:
    flags = ["--model", str(tiny_keras), "--rounds-target", "1", "--rounds-min", "1"]
    config = tmp_path / "server.toml"
    config.write_text("[rounds]\nover_selection = 1.0\ndeadline_s = 600.0\n")
    with running(tmp_path / "data", [*flags, "--config", str(config)], tmp_path / "log") as server:
        tokens = [
            requests.post(f"{server.url}/v1/devices", json={}, timeout=10).json()["token"]
            for _ in range(2)
        ]
        answers = [
            requests.post(f"{server.url}/v1/tasks", json={}, headers=auth(t), timeout=10).json()
            for t in tokens
        ]

    seated, refused = answers
    assert seated["task"]["round_id"] == 1
    # Two active devices for one seat: nothing to spread, the next round.
    assert (refused["task"], refused["reason"], refused["retry_round"]) == (None, "round_full", 2)
    assert refused["retry_after_s"] > 0
    spec: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text())
    schema = {**spec["components"]["schemas"]["TaskDecision"], "components": spec["components"]}
    jsonschema.validate(refused, schema)
    # The document types the field: a string there would not pass.
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**refused, "retry_round": "2"}, schema)
