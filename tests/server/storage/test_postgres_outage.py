"""PostgreSQL stopped for a few seconds under a running ``fedge serve
--database``: requests answer 503 ``database_unavailable`` meanwhile, the
server recovers by itself when the database is back (same process), and
the update acknowledged before the outage is in the round it closes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests

from fedge.wire.update_codec import decode_checkpoint
from tests.helpers.live_server import running
from tests.helpers.postgres import PostgresCluster, started
from tests.server.helpers import auth, constant_update, json_at, settled
from tests.server.http.test_http import ROUND_FLAGS, Device


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[PostgresCluster]:
    """A cluster of this module's own: the test stops it, others must not notice."""
    with started() as cluster:
        yield cluster


def until_stored(device: Device, url: str, body: bytes) -> list[requests.Response]:
    """Upload until the server answers something other than 503 (at most 30 s)."""
    answers = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        answers.append(device.upload(url, 1, body))
        if answers[-1].status_code != 503:
            break
        time.sleep(0.2)
    return answers


def test_the_server_answers_503_while_postgres_is_down_and_recovers(
    own_cluster: PostgresCluster, tiny_keras: Path, tmp_path: Path
) -> None:
    url = own_cluster.new_database("outage")
    args = ["--model", str(tiny_keras), *ROUND_FLAGS, "--database", url]
    with running(tmp_path / "data", args, tmp_path / "log") as server:
        devices = [Device(server.url) for _ in range(3)]
        tasks = [d.task() for d in devices]  # every device takes its seat
        base = tasks[0]["base_checkpoint"]
        before = devices[0].upload(server.url, 1, constant_update(1, base, 1.0))

        own_cluster.pause()
        try:
            during = devices[1].upload(server.url, 1, constant_update(1, base, 2.0))
            current = requests.get(f"{server.url}/v1/rounds/current", timeout=30)
            task = requests.post(
                f"{server.url}/v1/tasks", json={}, headers=auth(devices[2].token), timeout=30
            )
        finally:
            own_cluster.resume()

        after = until_stored(devices[1], server.url, constant_update(1, base, 2.0))
        last = devices[2].upload(server.url, 1, constant_update(1, base, 6.0))
        closed = settled(json_at(server.url), 1)
        body = requests.get(
            f"{server.url}/v1/checkpoints/{closed['result_checkpoint']}",
            headers=auth(devices[0].token),
            timeout=30,
        ).content
        still_running = server.process.poll() is None

    assert before.status_code == 201
    for refused in (during, current, task):
        assert refused.status_code == 503, refused.text
        assert refused.json()["code"] == "database_unavailable"
        assert refused.headers["Retry-After"] == "1"
    assert [a.status_code for a in after[:-1]] == [503] * (len(after) - 1)
    assert after[-1].status_code == 201, after[-1].text
    assert last.status_code == 201, last.text
    assert still_running and closed["state"] == "closed"
    assert closed["metrics"]["updates"] == 3  # the one acknowledged before is counted
    np.testing.assert_allclose(decode_checkpoint(body).weights["dense/bias"], [3.0, 3.0])
