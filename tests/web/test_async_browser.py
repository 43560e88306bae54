"""A browser tab (the demo page, training in TF.js in headless Chromium) and
Python devices in one asynchronous (FedBuff) run against a real ``fedge
serve --aggregation async``: the page joins with the same call as in sync
mode, a Python device's update trained on an older version still counts
(staleness 1), and every version is published as a ``version`` event.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from fedge.client_sim.device.client import FedgeClient
from fedge.client_sim.device.transport import HttpTransport
from fedge.wire.update_codec import Update, UpdateMeta, encode_update
from tests.helpers.live_server import LiveServer, running
from tests.web.test_browser_device import Tab, digits, keras_model, open_tab, wait_for_round

__all__ = ["digits", "keras_model", "open_tab"]  # the fixtures this module uses

ASYNC = ["--aggregation", "async", "--buffer", "2", "--concurrency", "4", "--max-staleness", "2"]


@pytest.fixture
def web_server(tmp_path: Path, digits_bundle: Path) -> Iterator[LiveServer]:
    """``fedge serve --model BUNDLE --aggregation async``: a version every 2 updates."""
    args = ["--model", str(digits_bundle), *ASYNC]
    with running(tmp_path / "data", args, tmp_path / "server.log") as server:
        yield server


def python_device(url: str) -> FedgeClient:
    client = FedgeClient(HttpTransport(url), seed=0)
    client.enrol(platform="python")
    return client


def small_update(client: FedgeClient, task: dict[str, Any]) -> bytes:
    """A small delta on every weight of the task's checkpoint."""
    base = client.checkpoint(task["base_checkpoint"]).weights
    deltas = {name: np.full_like(value, 1e-3) for name, value in base.items()}
    meta = UpdateMeta(
        round_id=task["round_id"], base_checkpoint=task["base_checkpoint"], num_examples=8
    )
    return encode_update(Update(meta=meta, deltas=deltas))


@pytest.mark.long(27)
def test_a_browser_tab_and_python_devices_in_one_async_run(
    web_server: LiveServer, open_tab: Any, digits: Any
) -> None:
    url = web_server.url
    first, late = python_device(url), python_device(url)
    task_first = first.task(True, True, True)["task"]
    task_late = late.task(True, True, True)["task"]
    assert task_first["round_id"] == task_late["round_id"] == 1

    tab: Tab = open_tab()
    x, y = digits
    assert tab.add_examples(x[:12], y[:12]) == 12
    outcome = tab.contribute_by_click()  # the same join as in sync mode
    assert outcome["status"] != "no_task", outcome
    assert outcome["round_id"] == 1 and outcome["receipt"]["round_id"] == 1

    receipt = first.upload(1, small_update(first, task_first))
    assert receipt["round_id"] == 1
    version1 = wait_for_round(web_server, 1)
    assert version1["state"] == "closed" and version1["metrics"]["updates"] == 2

    # Trained on version 1, arriving in version 2: accepted, staleness 1.
    stale = late.upload(1, small_update(late, task_late))
    assert stale["round_id"] == 2
    current = requests.get(f"{url}/v1/rounds/current", timeout=10).json()
    assert (current["round_id"], current["updates"]) == (2, 1)

    events = requests.get(f"{url}/v1/events/poll?after=0&types=version", timeout=30).json()
    (version,) = [e["data"] for e in events["events"]]
    assert version["version"] == 2 and version["checkpoint"] == version1["result_checkpoint"]
    assert version["updates"] == 2
    metrics = requests.get(f"{url}/metrics", timeout=10).text
    assert "fedge_versions_total 1" in metrics
    assert 'fedge_updates_by_staleness_total{staleness="0"} 2' in metrics
    assert 'fedge_updates_by_staleness_total{staleness="1"} 1' in metrics
