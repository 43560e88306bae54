"""Training leases of a real ``fedge serve --aggregation async`` survive a
kill -9: after the restart a device that held a lease still uploads on its
base version (staleness within the bound), asking again gives it the same
task, and the concurrency count is rebuilt from the store (not reset to
zero, which would let more devices train at once than ``--concurrency``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests

from tests.helpers.live_server import running
from tests.server.helpers import auth, constant_update, json_at, settled
from tests.server.http.test_http import Device

FLAGS = [
    "--aggregation", "async", "--buffer", "2", "--concurrency", "3",
    "--max-staleness", "2", "--max-update-norm", "1000", "--deadline", "300",
]  # fmt: skip


def ask(device: Device) -> dict[str, Any]:
    response = requests.post(
        f"{device.url}/v1/tasks", json={}, headers=auth(device.token), timeout=10
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_leases_and_the_concurrency_count_survive_kill_9(tiny_keras: Path, tmp_path: Path) -> None:
    data, log = tmp_path / "data", tmp_path / "server.log"
    args = ["--model", str(tiny_keras), *FLAGS]
    with running(data, args, log) as server:
        a, b, c = (Device(server.url) for _ in range(3))
        base1 = a.task()["base_checkpoint"]
        b.task()
        task_c = c.task()
        assert a.upload(server.url, 1, constant_update(1, base1, 1.0)).status_code == 201
        assert b.upload(server.url, 1, constant_update(1, base1, 2.0)).status_code == 201
        assert settled(json_at(server.url), 1)["state"] == "closed"
        server.kill_hard()  # version 2 is open; C still trains on version 1

    with running(data, args, log) as server:
        c.url = server.url
        d, e, f = (Device(server.url) for _ in range(3))
        again = ask(c)  # the same lease: no second slot
        assert again["task"] is not None and again["task"]["round_id"] == 1
        assert again["task"]["deadline_at"] == task_c["deadline_at"]
        assert d.task()["round_id"] == 2
        assert e.task()["round_id"] == 2
        refused = ask(f)  # C, D and E train: three of three
        assert refused["task"] is None and refused["reason"] == "concurrency_full", refused
        receipt = c.upload(server.url, 1, constant_update(1, base1, 3.0))
        assert receipt.status_code == 201, receipt.text
        assert receipt.json()["round_id"] == 2  # in version 2's buffer, staleness 1
        assert f.task()["round_id"] == 2  # C's slot is free again
