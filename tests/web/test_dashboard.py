"""The dashboard page in a real headless Chromium against a real server.

With the page open, two Python devices (real HTTP, ``FedgeClient``) refuse
nothing of the protocol: one first sends a malformed update, then both
upload; the round closes and the page shows it without a reload: its row,
its participants, the refusal by reason, and a point of the accuracy chart
at the devices' example-weighted mean accuracy. A pushed release appears in
the releases section. On a phone-sized screen nothing scrolls sideways but
the tables, inside their boxes. Screenshots ``dashboard`` and
``dashboard-phone`` are kept.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from playwright.sync_api import Browser, Page, ViewportSize

from fedge.client_sim.device.client import FedgeClient, ProtocolError
from fedge.client_sim.device.transport import HttpTransport
from fedge.wire.update_codec import Update, UpdateMeta, encode_update
from tests.helpers.browser import PHONE, PageWatch, screenshot, watch
from tests.helpers.live_server import LiveServer, running
from tests.helpers.release_bundles import bundle_tar

ADMIN = {"Authorization": "Bearer admin-secret"}
WAIT_MS = 30_000


def open_dashboard(browser: Browser, url: str, viewport: ViewportSize) -> tuple[Page, PageWatch]:
    page = browser.new_page(viewport=viewport)
    seen = watch(page)
    page.goto(f"{url}/dashboard")
    # Connected to the event stream, and the first refresh is drawn.
    page.wait_for_function(
        "() => window.fedgeDashboard && window.fedgeDashboard.live === 'live'"
        " && window.fedgeDashboard.refreshes > 0",
        timeout=WAIT_MS,
    )
    return page, seen


def device(url: str, seed: int) -> tuple[FedgeClient, dict[str, Any]]:
    """An enrolled device holding a task for the open round."""
    client = FedgeClient(HttpTransport(url), seed=seed)
    client.enrol(platform="sim")
    answer = client.task(idle=True, charging=True, unmetered=True)
    assert answer["task"] is not None, answer
    return client, answer["task"]


def trained_update(
    client: FedgeClient, task: dict[str, Any], num_examples: int, metrics: dict[str, float]
) -> bytes:
    """A small delta on the round's base checkpoint, as a device would send."""
    base = client.checkpoint(task["base_checkpoint"]).weights
    rng = np.random.default_rng(num_examples)
    deltas = {
        name: (rng.standard_normal(base[name].shape) * 1e-3).astype(np.float32)
        for name in task["weights"]
    }
    meta = UpdateMeta(
        round_id=task["round_id"],
        base_checkpoint=task["base_checkpoint"],
        num_examples=num_examples,
        metrics=metrics,
    )
    return encode_update(Update(meta=meta, deltas=deltas))


@pytest.fixture
def fixed_slice_server(tmp_path: Path, digits_bundle: Path) -> Iterator[LiveServer]:
    """The pages' server (rounds close at two updates) whose canary slice stays
    where it was pushed: the slice's key is random per server, and a 25 %
    slice that happens to hold no counted device widens on the next tick."""
    args = ["--model", str(digits_bundle), "--rounds-target", "2", "--rounds-min", "2"]
    environ = {**os.environ, "FEDGE_CANARY_MAX_PERCENT": "25"}
    with running(tmp_path / "data", args, tmp_path / "server.log", environ=environ) as server:
        yield server


@pytest.fixture
def second_bundle(digits_keras: Path, tmp_path: Path) -> bytes:
    """Another bundle of the served model (a new conversion: a new bundle id), as pushed."""
    from fedge.converters.bundle import convert
    from fedge.converters.options import ConvertOptions

    result = convert(digits_keras, tmp_path / "v2", ConvertOptions(targets=("tflite",)))
    return bundle_tar(result.path)


def test_the_dashboard_follows_a_round_and_a_release_live(
    browser: Browser, fixed_slice_server: LiveServer, second_bundle: bytes
) -> None:
    url = fixed_slice_server.url
    page, seen = open_dashboard(browser, url, ViewportSize(width=1280, height=900))
    assert page.locator("#round-row-1").get_attribute("data-state") == "open"
    assert page.locator("#accuracy-chart .chart-point").count() == 0
    (first, task), (second, _) = device(url, seed=1), device(url, seed=2)
    assert task["round_id"] == 1

    with pytest.raises(ProtocolError) as refused:
        first.upload(1, b"not an update")
    first.upload(1, trained_update(first, task, 10, {"loss": 0.4, "accuracy": 0.75}))
    second.upload(1, trained_update(second, task, 30, {"loss": 0.2, "accuracy": 0.95}))

    # No reload: the round's row turns closed from the event stream.
    closed = page.locator("#round-row-1[data-state='closed']")
    closed.wait_for(timeout=WAIT_MS)
    assert refused.value.code == "malformed_update"
    assert closed.locator("td.participants").inner_text() == "2 / 2"
    assert closed.locator("td.accepted").inner_text() == "2"
    assert "malformed_update \u00d71" in closed.inner_text()
    # (10 x 0.75 + 30 x 0.95) / 40 = 0.9; (10 x 0.4 + 30 x 0.2) / 40 = 0.25
    assert closed.locator("td.device-accuracy").inner_text() == "90.0%"
    assert closed.locator("td.device-loss").inner_text() == "0.250"
    point = page.locator("#accuracy-chart .chart-point[data-round='1']")
    assert point.count() == 1
    assert float(point.get_attribute("data-value") or "nan") == pytest.approx(0.9)
    page.locator("#round-row-2[data-state='open']").wait_for(timeout=WAIT_MS)
    assert page.locator("#devices-enrolled").inner_text() == "2"
    assert page.locator("#devices-platforms li[data-platform='sim']").inner_text() == "sim 2"
    shown = page.evaluate("window.fedgeDashboard")
    assert [e["data"]["state"] for e in shown["events"] if e["type"] == "round"][:2] == [
        "open",
        "closed",
    ]
    assert page.locator("#last-event").inner_text() != "none yet"

    pushed = requests.post(
        f"{url}/v1/releases",
        data=second_bundle,
        params={"notes": "from the dashboard test", "rollout": "25"},
        headers={**ADMIN, "Content-Type": "application/x-tar"},
        timeout=120,
    )

    assert pushed.status_code == 201, pushed.text
    version = pushed.json()["version"]
    row = page.locator(f"#release-row-{version}")
    row.wait_for(timeout=WAIT_MS)
    assert row.get_attribute("data-state") == "canary"
    assert "25% (canary)" in row.inner_text()
    assert "from the dashboard test" in row.inner_text()
    rollout = page.locator("#rollout")
    assert rollout.get_attribute("data-candidate") == str(version)
    assert f"candidate v{version} on 25% of devices" in rollout.inner_text()
    assert version in [r["version"] for r in page.evaluate("window.fedgeDashboard.releases")]
    # No device has evaluated the candidate yet: its canary decision is pending.
    canary = page.locator(f"#canary-row-{version}")
    canary.wait_for(timeout=WAIT_MS)
    assert canary.get_attribute("data-decision") == "pending"
    assert canary.get_attribute("data-outcome") == "keep collecting"
    assert "not enough evidence yet" in canary.inner_text()
    screenshot(page, "dashboard")
    assert seen.errors == []
    page.close()


def test_on_a_phone_only_the_tables_scroll_sideways(
    browser: Browser, web_server: LiveServer
) -> None:
    phone = ViewportSize(width=PHONE["width"], height=PHONE["height"])
    page, seen = open_dashboard(browser, web_server.url, phone)

    page_width = page.evaluate("document.documentElement.scrollWidth")
    viewport_width = page.evaluate("document.documentElement.clientWidth")
    rounds_box = page.evaluate(
        "(() => { const box = document.querySelector('#rounds .table-wrap');"
        " return [box.scrollWidth, box.clientWidth]; })()"
    )

    assert page_width <= viewport_width == PHONE["width"]
    assert rounds_box[0] > rounds_box[1]  # the rounds table scrolls inside its box
    assert page.locator("#round-row-1").is_visible()
    screenshot(page, "dashboard-phone")
    assert seen.errors == []
    page.close()
