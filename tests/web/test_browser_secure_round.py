"""A browser tab (the demo page, in headless Chromium) and Python devices
mask each other in one secure round of a real ``fedge serve
--secure-aggregation``: the page's WebCrypto module and the Python library
speak one protocol, and the round's sum is unmasked exactly enough that
the tab's share of it is a clipped training step."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from playwright.sync_api import Browser
from sklearn.datasets import load_digits

from fedge.client_sim.device.client import FedgeClient
from fedge.client_sim.device.secure_round import run_secure_round
from fedge.client_sim.device.transport import HttpTransport
from tests.helpers.browser import screenshot, watch
from tests.helpers.live_server import LiveServer, running

TIMEOUT_MS = 120_000
CLIP = 0.05
PYTHON_DEVICES = 2


@pytest.fixture
def secure_server(tmp_path: Path, digits_bundle: Path) -> Iterator[LiveServer]:
    config = tmp_path / "server.toml"
    config.write_text("tick_s = 0.05\n[rounds]\nover_selection = 1.0\n")
    args = ["--model", str(digits_bundle), "--config", str(config), "--deadline", "600"]
    args += ["--rounds-target", str(PYTHON_DEVICES + 1), "--rounds-min", "3"]
    args += ["--secure-aggregation", "--secure-clip", str(CLIP), "--secure-stage-s", "10"]
    with running(tmp_path / "data", args, tmp_path / "server.log") as server:
        yield server


def test_a_browser_tab_and_python_devices_complete_one_secure_round(
    browser: Browser, secure_server: LiveServer
) -> None:
    server = secure_server
    clients = [FedgeClient(HttpTransport(server.url)) for _ in range(PYTHON_DEVICES)]
    for client in clients:
        client.enrol()
    tasks = [c.task(idle=True, charging=True, unmetered=True)["task"] for c in clients]
    base = clients[0].checkpoint(tasks[0]["base_checkpoint"]).weights
    names = tasks[0]["secure_aggregation"]["weights"]
    rng = np.random.default_rng(27)
    deltas = [
        {n: rng.uniform(-2 * CLIP, 2 * CLIP, base[n].shape).astype(np.float32) for n in names}
        for _ in clients
    ]
    threads = [
        threading.Thread(target=run_secure_round, args=(c, t, d))
        for c, t, d in zip(clients, tasks, deltas, strict=True)
    ]
    for thread in threads:
        thread.start()
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    try:
        page = context.new_page()
        seen = watch(page)
        page.goto(server.url + "/")
        page.wait_for_function(
            "() => window.fedgeFederated && window.fedgeFederated.ready", timeout=TIMEOUT_MS
        )
        data = load_digits()
        x = (data.images / 16.0).astype(np.float32).reshape(-1, 64)
        for pixels, label in zip(x[:12], data.target[:12], strict=True):
            page.evaluate(
                "([p, l]) => window.fedgeFederated.addExample(p, l)", [pixels.tolist(), int(label)]
            )

        page.get_by_role("button", name="Help improve the model").click()
        page.wait_for_function(
            "() => window.fedgeFederated.lastOutcome || window.fedgeFederated.error",
            timeout=TIMEOUT_MS,
        )
        for thread in threads:
            thread.join(timeout=60)
        error = page.evaluate("() => window.fedgeFederated.error")
        outcome: dict[str, Any] = page.evaluate("() => window.fedgeFederated.lastOutcome")
        record = _settled(server, tasks[0]["round_id"])
        screenshot(page, "device-secure-round")

        assert error is None and outcome["status"] == "contributed" and outcome["secure"]
        assert outcome["round_id"] == tasks[0]["round_id"]
        assert record["state"] == "closed", record
        assert record["metrics"]["updates"] == PYTHON_DEVICES + 1
        # The tab's clipped delta is what the sum holds beyond the Python
        # devices': within [-clip, clip] (a wrong mask would leave noise
        # spread over +-2^32 quantisation steps), and not zero (it trained).
        new = clients[0].checkpoint(record["result_checkpoint"]).weights
        params = record["metrics"]["secure_params"]
        step = 2 * params["clip"] / ((1 << params["bits"]) - 1)
        tab_delta = {
            n: 3 * (new[n].astype(np.float64) - base[n])
            - sum(np.clip(d[n].astype(np.float64), -CLIP, CLIP) for d in deltas)
            for n in names
        }
        assert max(np.abs(v).max() for v in tab_delta.values()) <= CLIP + 3 * step + 1e-5
        assert max(np.abs(v).max() for v in tab_delta.values()) > 1e-4
        dashboard = context.new_page()
        dashboard.goto(server.url + "/dashboard")
        row = dashboard.locator(f"#round-row-{record['round_id']}")
        row.wait_for(timeout=TIMEOUT_MS)
        assert "fedavg · secure" in row.inner_text()
        assert "3 uploaded, 3 answered unmasking" in (row.get_attribute("title") or "")
        plain_uploads = [
            r for r in seen.requests if r.method == "POST" and r.url.endswith("/updates")
        ]
        assert plain_uploads == []
        assert seen.errors == []
    finally:
        context.close()
        for client in clients:
            client.transport.close()


def _settled(server: LiveServer, round_id: int) -> dict[str, Any]:
    from tests.server.helpers import settled

    return settled(lambda p: requests.get(server.url + p, timeout=30).json(), round_id, 60)
