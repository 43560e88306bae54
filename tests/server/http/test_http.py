"""The server as a real process over real HTTP: a round, and kill -9."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import requests

from fedge.wire.update_codec import decode_checkpoint
from tests.helpers.live_server import running
from tests.server.helpers import OCTET, auth, constant_update, json_at, settled

ROUND_FLAGS = ["--rounds-target", "3", "--rounds-min", "3", "--deadline", "300"]


class Device:
    def __init__(self, url: str) -> None:
        self.url = url
        body = requests.post(f"{url}/v1/devices", json={"platform": "test"}, timeout=10).json()
        self.id, self.token = body["device_id"], body["token"]

    def task(self) -> dict[str, Any]:
        answer = requests.post(
            f"{self.url}/v1/tasks", json={}, headers=auth(self.token), timeout=10
        ).json()
        assert answer["task"] is not None, answer
        return dict(answer["task"])

    def upload(self, url: str, round_id: int, body: bytes) -> requests.Response:
        return requests.post(
            f"{url}/v1/rounds/{round_id}/updates",
            data=body,
            timeout=30,
            headers={**auth(self.token), "Content-Type": OCTET},
        )


def test_a_round_over_http(tiny_keras: Path, tmp_path: Path) -> None:
    with running(
        tmp_path / "data", ["--model", str(tiny_keras), *ROUND_FLAGS], tmp_path / "server.log"
    ) as server:
        devices = [Device(server.url) for _ in range(3)]
        tasks = [d.task() for d in devices]
        base = tasks[0]["base_checkpoint"]

        receipts = [
            d.upload(server.url, 1, constant_update(1, base, float(v)))
            for d, v in zip(devices, (1, 2, 6), strict=True)
        ]

        assert [r.status_code for r in receipts] == [201, 201, 201]
        round_one = settled(json_at(server.url), 1)
        assert round_one["state"] == "closed"
        checkpoint = requests.get(
            f"{server.url}/v1/checkpoints/{round_one['result_checkpoint']}",
            headers=auth(devices[0].token),
            timeout=10,
        )
        np.testing.assert_allclose(
            decode_checkpoint(checkpoint.content).weights["dense/bias"], [3.0, 3.0]
        )
        assert hashlib.sha256(checkpoint.content).hexdigest() == round_one["result_checkpoint"]
        metrics = requests.get(f"{server.url}/metrics", timeout=10).text
        assert "fedge_updates_accepted_total 3" in metrics
        assert 'fedge_rounds_total{outcome="closed"} 1' in metrics


def test_kill_9_mid_round_loses_no_acknowledged_update(tiny_keras: Path, tmp_path: Path) -> None:
    data, log = tmp_path / "data", tmp_path / "server.log"
    args = ["--model", str(tiny_keras), *ROUND_FLAGS]
    with running(data, args, log) as server:
        devices = [Device(server.url) for _ in range(3)]
        tasks = [d.task() for d in devices]
        base = tasks[0]["base_checkpoint"]
        acknowledged = [
            d.upload(server.url, 1, constant_update(1, base, v))
            for d, v in zip(devices[:2], (1.0, 2.0), strict=True)
        ]
        assert [r.status_code for r in acknowledged] == [201, 201]

        server.kill_hard()

    with running(data, args, log) as restarted:
        current = requests.get(f"{restarted.url}/v1/rounds/current", timeout=10).json()
        assert (current["round_id"], current["state"], current["updates"]) == (1, "open", 2)
        retry = devices[0].upload(restarted.url, 1, constant_update(1, base, 1.0))
        assert retry.status_code == 200 and retry.json() == acknowledged[0].json()

        last = devices[2].upload(restarted.url, 1, constant_update(1, base, 6.0))

        assert last.status_code == 201
        round_one = settled(json_at(restarted.url), 1)
        assert round_one["state"] == "closed" and round_one["metrics"]["updates"] == 3
        body = requests.get(
            f"{restarted.url}/v1/checkpoints/{round_one['result_checkpoint']}",
            headers=auth(devices[0].token),
            timeout=10,
        ).content
        np.testing.assert_allclose(
            decode_checkpoint(body).weights["dense/kernel"], np.full((2, 2), 3.0)
        )
        base_again = requests.get(
            f"{restarted.url}/v1/checkpoints/{base}", headers=auth(devices[0].token), timeout=10
        ).content
        assert hashlib.sha256(base_again).hexdigest() == base
