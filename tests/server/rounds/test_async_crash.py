"""kill -9 of a real ``fedge serve --aggregation async`` with a half-full
buffer (fresh updates, then stale ones) and right as a step is due: after
each restart the buffer is rebuilt, and the versions made are the ones
worked out by hand for a server that never crashed, with every
acknowledged update applied exactly once.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
import requests

from fedge.wire.update_codec import decode_checkpoint
from tests.helpers.live_server import LiveServer, running
from tests.server.helpers import auth, constant_update, json_at, settled
from tests.server.http.test_http import Device

ASYNC_FLAGS = [
    "--aggregation", "async", "--buffer", "3", "--concurrency", "10",
    "--max-staleness", "2", "--max-update-norm", "1000", "--deadline", "300",
]  # fmt: skip


def version_bias(server: LiveServer, device: Device, version: int) -> npt.NDArray[np.float64]:
    record = settled(json_at(server.url), version)
    assert record["state"] == "closed", record
    body = requests.get(
        f"{server.url}/v1/checkpoints/{record['result_checkpoint']}",
        headers=auth(device.token),
        timeout=10,
    ).content
    return np.asarray(decode_checkpoint(body).weights["dense/bias"], np.float64)


def test_kill_9_with_a_half_full_buffer_and_at_a_step_loses_and_repeats_nothing(
    tiny_keras: Path, tmp_path: Path
) -> None:
    data, log = tmp_path / "data", tmp_path / "server.log"
    args = ["--model", str(tiny_keras), *ASYNC_FLAGS]
    receipts: list[tuple[Device, int, bytes, dict[str, object]]] = []

    def acknowledged(device: Device, url: str, version: int, body: bytes) -> None:
        response = device.upload(url, version, body)
        assert response.status_code == 201, response.text
        receipts.append((device, version, body, response.json()))

    with running(data, args, log) as server:
        a, b, c, d, e, f = (Device(server.url) for _ in range(6))
        tasks = {device: device.task() for device in (a, b, c, d, e)}
        base1 = tasks[a]["base_checkpoint"]
        acknowledged(a, server.url, 1, constant_update(1, base1, 1.0))
        acknowledged(b, server.url, 1, constant_update(1, base1, 2.0))
        server.kill_hard()  # version 1's buffer: 2 of 3

    with running(data, args, log) as server:
        current = requests.get(f"{server.url}/v1/rounds/current", timeout=10).json()
        assert (current["round_id"], current["updates"]) == (1, 2)
        acknowledged(c, server.url, 1, constant_update(1, base1, 3.0))
        np.testing.assert_allclose(version_bias(server, a, 1), [2.0, 2.0], atol=1e-6)
        # D and E trained on version 1: staleness 1 in version 2's buffer.
        acknowledged(d, server.url, 1, constant_update(1, base1, 4.0))
        acknowledged(e, server.url, 1, constant_update(1, base1, 5.0))
        server.kill_hard()  # version 2's buffer: 2 of 3, both stale

    with running(data, args, log) as server:
        current = requests.get(f"{server.url}/v1/rounds/current", timeout=10).json()
        assert (current["round_id"], current["updates"]) == (2, 2)
        f.url = server.url
        task_f = f.task()
        assert task_f["round_id"] == 2
        acknowledged(f, server.url, 2, constant_update(2, task_f["base_checkpoint"], 6.0))
        server.kill_hard()  # the buffer is full: the step is due, under way or done

    with running(data, args, log) as server:
        w = 1 / math.sqrt(2)
        expected = 2.0 + (w * 4.0 + w * 5.0 + 6.0) / (2 * w + 1)
        np.testing.assert_allclose(version_bias(server, a, 2), [expected] * 2, atol=1e-6)
        current = requests.get(f"{server.url}/v1/rounds/current", timeout=10).json()
        assert (current["round_id"], current["updates"]) == (3, 0)
        for device, version, body, receipt in receipts:  # each once, none lost
            retry = device.upload(server.url, version, body)
            assert retry.status_code == 200 and retry.json() == receipt
        version2 = requests.get(f"{server.url}/v1/rounds/2", timeout=10).json()
        assert version2["metrics"]["updates"] == 3
        assert version2["metrics"]["staleness_histogram"] == {"0": 1, "1": 2}
