"""The dashboard's health panel in a real headless Chromium against a real server.

Six devices report on the live digits release over real HTTP in
2-second windows: a healthy window (the baseline), then one where every
device's predictions pile onto one class and its accuracy falls. Once
that window has closed, the panel (polling the public series) shows both
windows and the alert, without a reload. No inline script: the page's CSP
holds (a violation would show in the watched console).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser

from tests.helpers.browser import watch
from tests.helpers.live_server import LiveServer, running

WINDOW_S = 2.0
WAIT_MS = 40_000


@pytest.fixture
def health_server(tmp_path: Path, digits_bundle: Path) -> Iterator[LiveServer]:
    environ = {**os.environ, "FEDGE_HEALTH_WINDOW_S": str(WINDOW_S)}
    args = ["--model", str(digits_bundle)]
    with running(tmp_path / "data", args, tmp_path / "server.log", environ=environ) as server:
        yield server


def fresh_window() -> None:
    now = time.time()
    time.sleep(math.floor(now / WINDOW_S + 1) * WINDOW_S - now + 0.05)


def report(histogram: list[int], value: float) -> dict[str, Any]:
    return {
        "metric": "accuracy",
        "loss": 1.0 - value,
        "value": value,
        "num_examples": sum(histogram),
        "runtime": "tflite",
        "histogram": histogram,
        "quantiles": None,
    }


def test_the_health_panel_shows_the_series_and_the_alert(
    browser: Browser, health_server: LiveServer
) -> None:
    url = health_server.url
    tokens = []
    for _ in range(6):
        reply = requests.post(f"{url}/v1/devices", json={"platform": "sim"}, timeout=30)
        tokens.append(reply.json()["token"])
    page = browser.new_page()
    seen = watch(page)
    page.goto(f"{url}/dashboard")

    for body in (report([3] * 10, 0.9), report([21] + [1] * 9, 0.3)):
        fresh_window()
        for token in tokens:
            reply = requests.post(
                f"{url}/v1/releases/1/health",
                json=body,
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            )
            assert reply.status_code == 201, reply.text
    fresh_window()
    page.wait_for_function(
        "() => window.fedgeHealth && window.fedgeHealth.alerts.length === 1", timeout=WAIT_MS
    )

    rows = page.locator("#health-body tr")
    assert rows.count() == 2
    assert rows.nth(0).get_attribute("data-alert") == "true"
    assert rows.nth(1).get_attribute("data-alert") == "false"
    assert "(baseline)" in rows.nth(1).inner_text()
    assert "6 / 6" in rows.nth(0).inner_text()
    status = page.locator("#health-status")
    assert "drift alert on tflite" in status.inner_text()
    assert status.get_attribute("data-alert") == "true"
    assert seen.errors == []
    page.close()
