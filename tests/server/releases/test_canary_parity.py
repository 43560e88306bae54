"""Parity on the devices' own runtimes (issue 23), over real HTTP: a
runtime whose canary devices report failed parity is kept off the
candidate, and off it after the other runtimes promote it; one lying
device cannot keep a release off its runtime. Real ``fedge serve``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.helpers.live_server import running
from tests.helpers.release_bundles import BundlePair
from tests.server.releases.test_canary import Api, bundles, evaluation

__all__ = ["bundles"]  # the module's fixture: the bundles are built once

# 8 counted devices that each see the candidate 0.1 better promote at the
# 8th report (see tests/server/releases/test_canary.py).
SETTINGS = {"FEDGE_CANARY_MIN_REPORTS": "3", "FEDGE_CANARY_REQUIRE_HISTORY": "false"}
GOOD = {"max_abs_error": 2e-6, "top1_agreement": 1.0, "samples": 32}
BROKEN = {"max_abs_error": 0.61, "top1_agreement": 0.4, "samples": 32}


@pytest.fixture
def api(bundles: BundlePair, tmp_path: Path) -> Iterator[Api]:
    environ = {**os.environ, **SETTINGS}
    data_dir = tmp_path / "data"
    with running(
        data_dir, ["--model", str(bundles.first.path)], tmp_path / "log", environ=environ
    ) as server:
        yield Api(server, data_dir)


def current(api: Api, token: str, runtime: str | None = None) -> requests.Response:
    params = {"runtime": runtime} if runtime is not None else {}
    return requests.get(
        f"{api.url}/v1/releases/current",
        params=params,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def health(api: Api, token: str, version: int, runtime: str) -> requests.Response:
    body = {
        "metric": "accuracy",
        "loss": 0.3,
        "value": 0.9,
        "num_examples": 10,
        "runtime": runtime,
        "histogram": [3, 3, 4],
        "quantiles": None,
    }
    return requests.post(
        f"{api.url}/v1/releases/{version}/health",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def better(runtime: str, parity: dict[str, Any]) -> dict[str, Any]:
    return {**evaluation(0.9, 0.8, 20), "runtime": runtime, "parity": parity}


def test_a_runtime_whose_parity_fails_is_kept_off_the_candidate(
    api: Api, bundles: BundlePair
) -> None:
    browsers = [api.enrol() for _ in range(3)]
    others = [api.enrol() for _ in range(5)]
    api.push_candidate(bundles.second, rollout=100)
    reports = [
        api.report(browsers[0], 2, better("tfjs-webgl", BROKEN)),
        api.report(browsers[1], 2, better("tfjs-webgl", GOOD)),
        api.report(browsers[2], 2, better("tfjs-webgl", BROKEN)),
        # One lying TFLite device: a minority, it keeps nobody off.
        api.report(others[0], 2, better("tflite", BROKEN)),
        *[api.report(t, 2, better("tflite", GOOD)) for t in others[1:4]],
    ]
    assert [r.status_code for r in reports] == [201] * 7, reports[0].text
    pending = api.release(2)["parity"]
    during = {
        rt: current(api, browsers[1], rt).json()["version"] for rt in ("tfjs-webgl", "tflite")
    }
    unnamed = current(api, browsers[1]).json()["version"]
    deciding = api.report(others[4], 2, better("tflite", GOOD))
    after = {rt: current(api, others[0], rt).json() for rt in ("tfjs-webgl", "tflite", "tfjs-wasm")}

    assert pending["tfjs-webgl"] == {
        "devices": 3,
        "failing": 2,
        "max_error": pytest.approx(0.61),
        "agreement": pytest.approx(0.4),
        "ok": False,
    }
    assert pending["tflite"]["ok"] is True
    assert (pending["tflite"]["devices"], pending["tflite"]["failing"]) == (4, 1)
    assert during == {"tfjs-webgl": 1, "tflite": 2}
    assert unnamed == 2  # a device that names no runtime gets what it got before
    # The other runtimes promote it; the failed one keeps release 1.
    assert deciding.json()["decided"] == "promote", deciding.text
    assert api.states() == {1: "retired", 2: "live"}
    assert (after["tfjs-webgl"]["version"], after["tfjs-webgl"]["channel"]) == (1, "live")
    assert after["tflite"]["version"] == after["tfjs-wasm"]["version"] == 2
    # Health reports follow the same gate: a held-off runtime reports on
    # the release it serves (1), not on the one it was kept off.
    assert health(api, browsers[0], 1, "tfjs-webgl").status_code == 201
    off = health(api, browsers[0], 2, "tfjs-webgl")
    assert (off.status_code, off.json()["code"]) == (409, "not_serving")
    assert health(api, others[0], 2, "tflite").status_code == 201
    change = api.changes()[0]
    assert change["action"] == "promote"
    assert change["details"]["held_runtimes"] == ["tfjs-webgl"]
    assert change["details"]["parity"]["tflite"]["devices"] == 5


def test_a_lying_device_alone_keeps_no_runtime_off(api: Api, bundles: BundlePair) -> None:
    liar, honest = api.enrol(), api.enrol()
    api.push_candidate(bundles.second, rollout=100)
    assert api.report(liar, 2, better("tflite", BROKEN)).status_code == 201
    assert api.report(honest, 2, better("tflite", GOOD)).status_code == 201

    assert api.release(2)["parity"]["tflite"]["ok"] is True
    assert current(api, honest, "tflite").json()["version"] == 2


BAD: list[dict[str, Any]] = [
    {"runtime": "TF JS"},
    {"runtime": ""},
    {"runtime": "x" * 33},
    {"runtime": 3},
    {"parity": GOOD},  # parity without the runtime it was measured on
    {"runtime": "tflite", "parity": {**GOOD, "top1_agreement": 1.5}},
    {"runtime": "tflite", "parity": {**GOOD, "max_abs_error": -1}},
    {"runtime": "tflite", "parity": {**GOOD, "max_abs_error": float("nan")}},
    {"runtime": "tflite", "parity": {**GOOD, "samples": 0}},
    {"runtime": "tflite", "parity": {**GOOD, "samples": True}},
    {"runtime": "tflite", "parity": {"max_abs_error": 0.0}},
    {"runtime": "tflite", "parity": {**GOOD, "extra": 1}},
    {"runtime": "tflite", "parity": [1, 2, 3]},
    # The candidate's predictions (the health baseline): with the runtime,
    # exactly one of histogram and quantiles, a histogram of the release's 3 classes.
    {"predictions": {"histogram": [1, 2, 3], "quantiles": None}},
    {"runtime": "tflite", "predictions": {"histogram": [1, 2], "quantiles": None}},
    {"runtime": "tflite", "predictions": {"histogram": None, "quantiles": [0, 1, 2, 3, 4]}},
    {"runtime": "tflite", "predictions": {"histogram": [1, 2, 3], "quantiles": [0, 1, 2, 3, 4]}},
    {"runtime": "tflite", "predictions": {"histogram": [1, -2, 3], "quantiles": None}},
    {"runtime": "tflite", "predictions": {"histogram": [0, 0, 0], "quantiles": None}},
    {"runtime": "tflite", "predictions": {"histogram": [1, 2, 3]}},
    {"runtime": "tflite", "predictions": {"histogram": [1, True, 3], "quantiles": None}},
    {"runtime": "tflite", "predictions": {"histogram": [1] * 1001, "quantiles": None}},
    {"runtime": "tflite", "predictions": [1, 2, 3]},
]


def test_a_bad_runtime_or_parity_is_refused_and_changes_nothing(
    api: Api, bundles: BundlePair
) -> None:
    device = api.enrol()
    api.push_candidate(bundles.second, rollout=100)
    before = api.state()
    for change in BAD:
        body = {**evaluation(0.9, 0.8, 20), **change}
        refused = requests.post(
            f"{api.url}/v1/releases/2/evaluations",
            data=json.dumps(body),  # NaN as JSON's extension, which the server refuses
            headers={"Authorization": f"Bearer {device}", "Content-Type": "application/json"},
            timeout=30,
        )
        assert refused.status_code == 400, (change, refused.text)
        assert refused.json()["code"], change
    assert api.state() == before
    assert api.release(2)["parity"] == {}
    good = {"runtime": "tflite", "predictions": {"histogram": [4, 0, 16], "quantiles": None}}
    taken = api.report(device, 2, {**evaluation(0.9, 0.8, 20), **good})
    assert taken.status_code == 201, taken.text
    (stored,) = api.evaluations(2)["evaluations"]
    assert stored["predictions"] == good["predictions"]


def test_a_bad_runtime_query_is_refused(api: Api) -> None:
    device = api.enrol()
    for bad in ("Web GL", "x" * 40):
        reply = current(api, device, bad)
        assert reply.status_code == 400, reply.text
        assert reply.json()["code"] == "bad_query"
    twice = requests.get(
        f"{api.url}/v1/releases/current?runtime=tflite&runtime=tfjs-cpu",
        headers={"Authorization": f"Bearer {device}"},
        timeout=30,
    )
    assert twice.status_code == 400
