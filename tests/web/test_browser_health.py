"""Browser devices report the live model's health (issue 23), end to end.

Real ``fedge serve`` with 4-second health windows and a headless Chromium
page (a device running TF.js on its backend). The user labels digits on
the page; after a short pause the page runs the release it serves on the
examples labelled since its last report and sends numbers only (``POST
/v1/releases/1/health``: loss, accuracy, a histogram of predicted
classes). More labels in the same window wait for the window the server
set (``next_report_at``); the reports are counted in ``GET
/v1/releases/1/health``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser

from tests.helpers.live_server import LiveServer, serving_model
from tests.web.test_browser_device import TIMEOUT_MS, Tab, digits, open_device_tab

__all__ = ["digits"]  # a module fixture, shared
WINDOW_S = 4.0
FIELDS = {"metric", "loss", "value", "num_examples", "runtime", "histogram", "quantiles"}


@pytest.fixture
def server(tmp_path: Path, digits_bundle: Path) -> Iterator[LiveServer]:
    with serving_model(tmp_path, digits_bundle, {"FEDGE_HEALTH_WINDOW_S": str(WINDOW_S)}) as live:
        yield live


def open_tab(browser: Browser, server: LiveServer) -> Tab:
    return open_device_tab(browser, server.url)


def reported(tab: Tab, count: int) -> dict[str, Any]:
    tab.page.wait_for_function(
        f"() => window.fedgeFederated.healthReports >= {count}", timeout=TIMEOUT_MS
    )
    outcome: dict[str, Any] = tab.state("lastHealth")
    return outcome


def test_the_page_reports_the_live_model_s_health_at_the_server_s_pace(
    browser: Browser, server: LiveServer, digits: Any
) -> None:
    x, y = digits
    tab = open_tab(browser, server)
    try:
        tab.add_examples(x[:30], y[:30])
        first = reported(tab, 1)
        tab.add_examples(x[30:36], y[30:36])
        second = reported(tab, 2)
        backend = tab.page.evaluate("() => tf.getBackend()")
        errors = tab.seen.errors
        logged = tab.state("log")
    finally:
        tab.close()
    time.sleep(max(0.0, second["receipt"]["next_report_at"] - time.time()) + 0.1)
    series = requests.get(f"{server.url}/v1/releases/1/health", timeout=30).json()

    assert errors == []
    runtime = f"tfjs-{backend}"
    for outcome, n in ((first, 30), (second, 6)):
        body = outcome["body"]
        assert outcome["status"] == "reported" and outcome["version"] == 1
        assert set(body) == FIELDS  # numbers only: never an example
        assert (body["metric"], body["runtime"], body["num_examples"]) == ("accuracy", runtime, n)
        assert len(body["histogram"]) == 10 and sum(body["histogram"]) == n
        assert body["quantiles"] is None and 0 <= body["value"] <= 1 and body["loss"] >= 0
    assert first["body"]["value"] > 0.7  # the served model knows the digits
    # The second report waited for the window the first one's receipt named.
    assert second["receipt"]["window"] > first["receipt"]["window"]
    assert second["receipt"]["received_at"] >= first["receipt"]["next_report_at"]
    assert any(line.startswith("health: reported accuracy") for line in logged)
    counted = {w["window"]: w for w in series["windows"]}
    for outcome in (first, second):
        window = counted[outcome["receipt"]["window"]]
        assert (window["runtime"], window["devices"]) == (runtime, 1)
        assert window["value"] == pytest.approx(outcome["body"]["value"])
