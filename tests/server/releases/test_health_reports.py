"""The live model's health over real HTTP: reports validated, windows judged, alerts raised.

A real ``fedge serve`` with release 1 (a 3-class bundle) live and
2-second windows. Devices report a histogram of their predicted classes
and their accuracy on what they labelled; a window is judged once it has
closed. Each device is one vote and the alert needs a majority, so a
minority of lying devices can neither raise the alert nor silence it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.helpers.live_server import running
from tests.helpers.release_api import ReleaseApi
from tests.helpers.release_bundles import Built, build

WINDOW_S = 2.0
WASM = "tfjs-wasm"
MIN_DEVICES = 5


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build(tmp_path_factory.mktemp("health-bundles"), "first", 0.0)


@dataclass
class Api(ReleaseApi):
    def enrol(self) -> str:
        reply = requests.post(f"{self.url}/v1/devices", json={"platform": "t"}, timeout=30)
        assert reply.status_code == 201, reply.text
        token: str = reply.json()["token"]
        return token

    def report(self, token: str, body: Any, version: int = 1) -> requests.Response:
        data = body if isinstance(body, str | bytes) else json.dumps(body)
        return requests.post(
            f"{self.url}/v1/releases/{version}/health",
            data=data,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            timeout=30,
        )

    def series(self) -> dict[str, Any]:
        reply = requests.get(f"{self.url}/v1/releases/1/health", timeout=30)
        assert reply.status_code == 200, reply.text
        shown: dict[str, Any] = reply.json()
        return shown

    def stored_reports(self) -> int:
        """Every report the database holds, read from the file itself."""
        with contextlib.closing(sqlite3.connect(self.data_dir / "fedge.sqlite3")) as conn:
            (count,) = conn.execute("SELECT COUNT(*) FROM health_reports").fetchone()
        return int(count)

    def health_events(self) -> list[dict[str, Any]]:
        reply = requests.get(f"{self.url}/v1/events/poll?after=0&types=health", timeout=30)
        assert reply.status_code == 200, reply.text
        return [e["data"] for e in reply.json()["events"]]


@pytest.fixture(scope="module")
def api(bundle: Built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """One server for the module: each test uses its own devices, and the
    drift tests each their own runtime (a series is per runtime)."""
    tmp_path = tmp_path_factory.mktemp("health-server")
    environ = {
        **os.environ,
        "FEDGE_HEALTH_WINDOW_S": str(WINDOW_S),
        "FEDGE_HEALTH_MIN_DEVICES": str(MIN_DEVICES),
    }
    data_dir = tmp_path / "data"
    with running(data_dir, ["--model", str(bundle.path)], tmp_path / "log", environ=environ) as s:
        yield Api(s, data_dir)


def health(
    histogram: list[int], value: float, loss: float = 0.4, runtime: str = "tflite"
) -> dict[str, Any]:
    return {
        "metric": "accuracy",
        "loss": loss,
        "value": value,
        "num_examples": sum(histogram),
        "runtime": runtime,
        "histogram": histogram,
        "quantiles": None,
    }


HEALTHY = health([10, 10, 10], 0.9)
DRIFTED = health([26, 2, 2], 0.35, loss=1.8)


def fresh_window() -> None:
    """Wait for the start of the next window, so a phase's reports share one."""
    now = time.time()
    time.sleep(math.floor(now / WINDOW_S + 1) * WINDOW_S - now + 0.05)


# --- bad input changes nothing -----------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ('{"metric": "accuracy", "loss": NaN}', 400, "bad_json"),
        ({**HEALTHY, "value": 1.5}, 400, "bad_health_report"),
        ({**HEALTHY, "loss": -1}, 400, "bad_health_report"),
        ({**HEALTHY, "histogram": [10, 10, 10, 10]}, 400, "bad_health_report"),
        ({**HEALTHY, "histogram": [10, -1, 10]}, 400, "bad_health_report"),
        ({**HEALTHY, "histogram": [0, 0, 0]}, 400, "bad_health_report"),
        ({**HEALTHY, "histogram": [1] * 1001}, 400, "bad_health_report"),
        ({**HEALTHY, "histogram": [10**6] * 4000}, 413, "payload_too_large"),
        ({**HEALTHY, "histogram": None, "quantiles": [0, 1, 2, 3, 4]}, 400, "bad_health_report"),
        ({**HEALTHY, "quantiles": [0, 1, 2, 3, 4]}, 400, "bad_health_report"),
        ({**HEALTHY, "runtime": "x" * 50}, 400, "bad_health_report"),
        ({**HEALTHY, "device_id": "someone-else"}, 400, "bad_health_report"),
        ({**HEALTHY, "num_examples": True}, 400, "bad_health_report"),
        ([HEALTHY], 400, "bad_json"),
    ],
)
def test_a_bad_report_is_refused_with_a_code_and_stores_nothing(
    api: Api, body: Any, status: int, code: str
) -> None:
    token = api.enrol()
    before = api.stored_reports()

    reply = api.report(token, body)

    assert reply.status_code == status, reply.text
    assert reply.json()["code"] == code
    assert api.stored_reports() == before


def test_reports_need_a_device_and_the_release_it_serves(api: Api) -> None:
    token = api.enrol()
    before = api.stored_reports()

    anonymous = requests.post(f"{api.url}/v1/releases/1/health", json=HEALTHY, timeout=30)
    unknown = api.report(token, HEALTHY, version=7)
    huge = api.report(token, HEALTHY, version=2**63)

    assert anonymous.status_code == 401
    assert (unknown.status_code, unknown.json()["code"]) == (404, "unknown_release")
    assert (huge.status_code, huge.json()["code"]) == (404, "unknown_release")
    assert api.stored_reports() == before


def test_one_report_per_device_and_window_a_flood_counts_once(api: Api) -> None:
    token = api.enrol()
    fresh_window()
    before = api.series()["open_reports"]

    mine = {**HEALTHY, "runtime": "keras"}
    first = api.report(token, mine)
    again = api.report(token, mine)
    flood = [api.report(token, {**mine, "value": 0.1 + i / 100}) for i in range(30)]
    shown = api.series()

    assert first.status_code == 201, first.text
    assert again.status_code == 200 and again.json() == first.json()
    assert {r.status_code for r in flood} == {409}
    assert {r.json()["code"] for r in flood} == {"already_reported"}
    receipt = first.json()
    assert receipt["next_report_at"] == (receipt["window"] + 1) * WINDOW_S
    assert shown["open_reports"] == before + 1 and shown["window_s"] == WINDOW_S


# --- the drift rule over HTTP -------------------------------------------------


def test_drift_raises_the_alert_and_a_lying_minority_cannot_move_it(api: Api) -> None:
    tokens = [api.enrol() for _ in range(10)]

    # Window A: everyone healthy, the baseline.
    fresh_window()
    for token in tokens:
        assert api.report(token, HEALTHY).status_code == 201
    # Window B: still healthy; 4 of 10 lie that the model drifted.
    fresh_window()
    for i, token in enumerate(tokens):
        assert api.report(token, DRIFTED if i < 4 else HEALTHY).status_code == 201
    # Window C: the population drifted; 4 of 10 lie that all is well.
    fresh_window()
    for i, token in enumerate(tokens):
        assert api.report(token, HEALTHY if i < 4 else DRIFTED).status_code == 201
    before_close = api.health_events()
    fresh_window()
    windows = [w for w in api.series()["windows"] if w["runtime"] == "tflite"]

    # Nothing was judged before window C closed.
    assert [e for e in before_close if e["runtime"] == "tflite"] == []
    assert [(w["baseline"], w["alert"], w["devices"]) for w in windows] == [
        (True, False, 10),
        (False, False, 10),
        (False, True, 10),
    ]
    stable, drifted = windows[1], windows[2]
    assert stable["value"] == pytest.approx(0.9) and stable["drop"] == pytest.approx(0.0)
    assert stable["distance"] == pytest.approx(0.0)
    # One vote per device: 4 liars of 10 in each window, a majority needs 6.
    assert (stable["votes"], drifted["votes"]) == (4, 6)
    assert drifted["value"] == pytest.approx(0.35)
    assert drifted["drop"] == pytest.approx(0.55)
    # Class shares (26, 2, 2)/30 against (1, 1, 1)/3: TVD = 26/30 - 1/3.
    assert drifted["distance"] == pytest.approx(26 / 30 - 1 / 3)
    events = [e for e in api.health_events() if e["runtime"] == "tflite"]
    assert len(events) == 1
    assert events[0]["state"] == "raised" and events[0]["runtime"] == "tflite"
    assert events[0]["window"] == drifted["window"] and events[0]["devices"] == 10
    assert "device" not in json.dumps(events[0]).replace('"devices"', "")
    # Without health_alert_cut, an alert cuts nothing.
    assert [r["version"] for r in api.releases()["releases"]] == [1]
    metrics = requests.get(f"{api.url}/metrics", timeout=30).text
    assert 'fedge_health_alert{runtime="tflite",version="1"} 1' in metrics
    assert 'fedge_health_reports_total{runtime="tflite"}' in metrics


def test_too_few_devices_set_no_baseline_and_raise_nothing(api: Api) -> None:
    tokens = [api.enrol() for _ in range(MIN_DEVICES - 1)]
    fresh_window()
    for token in tokens:
        assert api.report(token, {**DRIFTED, "runtime": WASM}).status_code == 201
    fresh_window()
    for token in tokens:
        assert api.report(token, {**HEALTHY, "runtime": WASM}).status_code == 201
    fresh_window()

    windows = [w for w in api.series()["windows"] if w["runtime"] == WASM]

    assert [(w["baseline"], w["alert"], w["devices"]) for w in windows] == [
        (False, False, MIN_DEVICES - 1),
        (False, False, MIN_DEVICES - 1),
    ]
    assert [e for e in api.health_events() if e["runtime"] == WASM] == []


def test_with_alert_cut_a_raised_alert_cuts_a_release(bundle: Built, tmp_path: Path) -> None:
    environ = {
        **os.environ,
        "FEDGE_HEALTH_WINDOW_S": str(WINDOW_S),
        "FEDGE_HEALTH_MIN_DEVICES": str(MIN_DEVICES),
        "FEDGE_HEALTH_ALERT_CUT": "1",
    }
    data_dir = tmp_path / "data"
    args = ["--model", str(bundle.path)]
    with running(data_dir, args, tmp_path / "log", environ=environ) as server:
        api = Api(server, data_dir)
        tokens = [api.enrol() for _ in range(MIN_DEVICES)]
        for body in (HEALTHY, DRIFTED):
            fresh_window()
            for token in tokens:
                assert api.report(token, body).status_code == 201
        fresh_window()
        alerted = api.series()["windows"][-1]["alert"]
        releases = api.releases()["releases"]
        changes = api.changes()

    assert alerted
    assert [r["version"] for r in releases] == [2, 1]
    assert releases[0]["created_by"] == "health"
    assert "health alert on release 1 (tflite): 5 of 5 devices drifted" in releases[0]["notes"]
    assert any(c["actor"] == "health" and c["version"] == 2 for c in changes)
