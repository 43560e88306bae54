"""Releases, canaries, predict and events on a real ``fedge serve
--aggregation async`` over real HTTP: the release policy
(``release_every_rounds = N``) cuts a release every N *versions* (each
closed version is a closed round of this mode); devices in the candidate's
slice decide its canary; predict serves the live release, before and after
the promotion; and the event stream carries a ``version`` event for each
version made, beside the ``release`` events.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from fedge.server.releases.rollout import in_canary
from tests.helpers.live_server import running
from tests.helpers.release_api import stored_slice_key
from tests.helpers.release_bundles import MODEL_NAME, build
from tests.server.releases.test_canary import evaluation
from tests.server.releases.test_release_cutting import (
    ADMIN,
    Api,
    Bundles,
    Device,
    closed_round,
    wait_for,
)

ASYNC = [
    "--aggregation", "async", "--buffer", "2", "--concurrency", "50", "--max-staleness", "3",
    "--deadline", "600",
]  # fmt: skip
SETTINGS = {
    "FEDGE_RELEASE_EVERY_ROUNDS": "2",
    "FEDGE_CANARY_MIN_REPORTS": "3",
    "FEDGE_CANARY_REQUIRE_HISTORY": "false",
}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Bundles:
    root = tmp_path_factory.mktemp("async-release-bundles")
    return Bundles(first=build(root, "first", 0.0), with_lambda=root / "unused")


class Events:
    """The SSE stream, read on a thread from the moment it is opened."""

    def __init__(self, url: str, types: str) -> None:
        self.blocks: list[dict[str, str]] = []
        self._response = requests.get(
            f"{url}/v1/events?types={types}&timeout=120", stream=True, timeout=30
        )
        assert self._response.status_code == 200, self._response.text
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        block: dict[str, str] = {}
        try:
            for line in self._response.iter_lines(decode_unicode=True):
                if not line:
                    if "data" in block:
                        self.blocks.append(block)
                    block = {}
                elif ": " in line:
                    key, value = line.split(": ", 1)
                    block[key] = value
        except (requests.RequestException, AttributeError, ValueError):
            return  # closed by the test

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [json.loads(b["data"]) for b in list(self.blocks) if b.get("event") == kind]

    def close(self) -> None:
        self._response.close()
        self._thread.join(timeout=10)


@pytest.fixture
def api(bundles: Bundles, tmp_path: Path) -> Iterator[Api]:
    environ = {**os.environ, **SETTINGS}
    args = ["--model", str(bundles.first.path), *ASYNC]
    with running(tmp_path / "data", args, tmp_path / "server.log", environ=environ) as server:
        yield Api(server, tmp_path / "data")


def predict(url: str, device: Device) -> dict[str, Any]:
    reply = requests.post(
        f"{url}/v1/models/{MODEL_NAME}/predict",
        json={"inputs": {"x": [[0.5, -1.0, 2.0, 0.25]]}},
        headers=device.auth,
        timeout=60,
    )
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


@pytest.mark.long(43)
def test_releases_canary_predict_and_events_in_async_mode(api: Api) -> None:
    events = Events(api.url, "version,release")
    try:
        evaluators = [Device(api.url) for _ in range(40)]  # enrolled before the cut
        trainers = [Device(api.url) for _ in range(4)]
        before = predict(api.url, evaluators[0])
        live1 = api.release(1)
        assert before["bundle_id"] == live1["bundle_id"]

        # Version 1 (two updates) is made: no cut yet (one version closed).
        replies = [d.train(v) for d, v in zip(trainers[:2], (1.0, 3.0), strict=True)]
        assert [r.status_code for r in replies] == [201, 201]
        closed_round(api.url, 1)
        assert [r["version"] for r in api.releases()["releases"]] == [1]
        # Version 2: the second closed version is cut (release_every_rounds = 2).
        replies = [d.train(v) for d, v in zip(trainers[2:], (5.0, 7.0), strict=True)]
        assert [r.status_code for r in replies] == [201, 201]
        checkpoint = closed_round(api.url, 2)["result_checkpoint"]
        wait_for(lambda: len(api.releases()["releases"]) == 2, 30)
        cut = api.built(2)
        assert (cut["state"], cut["source"], cut["created_by"]) == (
            "canary",
            "round:2",
            "release policy",
        ), cut
        (cut_change,) = [c for c in api.changes() if c["action"] == "cut"]
        assert cut_change["details"]["checkpoint"] == checkpoint
        assert "2 rounds closed" in cut_change["why"], cut_change
        # Predict serves the live release, never the canary.
        assert predict(api.url, evaluators[0])["bundle_id"] == live1["bundle_id"]

        widened = requests.post(
            f"{api.url}/v1/admin/rollout", json={"percent": 50}, headers=ADMIN, timeout=30
        )
        assert widened.status_code == 200, widened.text
        key = stored_slice_key(api.data_dir)
        in_slice = [d for d in evaluators if in_canary(key, cut["bundle_id"], d.id, 50)]
        assert len(in_slice) >= 8, len(in_slice)
        decided = []
        for i, device in enumerate(in_slice[:8]):
            reply = requests.post(
                f"{api.url}/v1/releases/2/evaluations",
                json=evaluation(0.9, 0.8, 5 + 10 * (i % 3), using="personal"),
                headers=device.auth,
                timeout=30,
            )
            assert reply.status_code == 201, reply.text
            decided.append(reply.json()["decided"])
        assert decided == [None] * 7 + ["promote"]
        assert {r["version"]: r["state"] for r in api.releases()["releases"]} == {
            1: "retired",
            2: "live",
        }
        after = predict(api.url, evaluators[0])
        assert after["bundle_id"] == cut["bundle_id"] != before["bundle_id"]
        assert after["version"] == "2"

        wait_for(lambda: any(e["state"] == "live" for e in events.of("release")), 30)
        versions = events.of("version")
        assert [(e["version"], e["made_by"], e["updates"]) for e in versions] == [
            (2, 1, 2),
            (3, 2, 2),
        ]
        assert versions[1]["checkpoint"] == checkpoint
        states = [e["state"] for e in events.of("release") if e["version"] == 2]
        assert states[0] == "building" and "canary" in states and states[-1] == "live", states
    finally:
        events.close()
