"""The dashboard in asynchronous aggregation, in a real headless Chromium
against a real ``fedge serve --aggregation async``: the async panel shows
the version, versions per minute, the buffer fill, the devices training,
the uploads refused as too stale and a staleness bar chart, all following
the uploads of Python devices (real HTTP) without a reload; the round-only
columns are hidden and rounds are called versions. In sync mode the panel
stays hidden. Screenshot ``dashboard-async`` is kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ViewportSize

from fedge.client_sim.device.client import ProtocolError
from tests.helpers.browser import screenshot
from tests.helpers.live_server import LiveServer, running
from tests.web.test_dashboard import WAIT_MS, device, open_dashboard, trained_update

ASYNC_FLAGS = [
    "--aggregation", "async", "--buffer", "2", "--concurrency", "8", "--max-staleness", "1",
]  # fmt: skip
VIEWPORT = ViewportSize(width=1280, height=900)


@pytest.fixture
def async_server(tmp_path: Path, digits_bundle: Path) -> Iterator[LiveServer]:
    args = ["--model", str(digits_bundle), *ASYNC_FLAGS]
    with running(tmp_path / "data", args, tmp_path / "server.log") as server:
        yield server


def text_is(page: object, selector: str, expected: str) -> None:
    """Wait until the element at ``selector`` reads ``expected``."""
    page.wait_for_function(  # type: ignore[attr-defined]
        "([s, e]) => document.querySelector(s)?.textContent === e",
        arg=[selector, expected],
        timeout=WAIT_MS,
    )


def test_the_async_panel_follows_versions_live(browser: Browser, async_server: LiveServer) -> None:
    url = async_server.url
    page, seen = open_dashboard(browser, url, VIEWPORT)
    assert page.locator("#aggregation").is_visible()
    assert page.locator("#rounds-title").inner_text() == "Versions"
    assert not page.locator("#rounds th.round-only").first.is_visible()
    assert page.locator("#async-version").inner_text() == "1"
    assert page.locator("#async-buffer").inner_text() == "0 / 2"
    assert page.locator("#async-concurrency").inner_text() == "0 / 8"
    assert page.locator("#staleness-chart").get_attribute("data-total") == "0"

    a, b, c, e = (device(url, seed) for seed in (1, 2, 3, 5))  # all on version 1
    for n, (client, task) in enumerate((a, b), start=10):
        client.upload(1, trained_update(client, task, n, {"loss": 0.5, "accuracy": 0.5}))
    text_is(page, "#async-version", "2")
    d = device(url, 4)
    assert d[1]["round_id"] == 2
    c[0].upload(1, trained_update(c[0], c[1], 12, {"loss": 0.5}))  # staleness 1
    d[0].upload(2, trained_update(d[0], d[1], 13, {"loss": 0.5}))  # fresh: version 2 is made
    with pytest.raises(ProtocolError) as refused:  # version 1 is two versions behind now
        e[0].upload(1, trained_update(e[0], e[1], 14, {"loss": 0.5}))
    assert refused.value.code == "too_stale"
    f, g = device(url, 6), device(url, 7)
    for n, (client, task) in enumerate((f, g), start=15):
        assert task["round_id"] == 3
        client.upload(3, trained_update(client, task, n, {"loss": 0.5}))

    text_is(page, "#async-version", "4")
    assert page.locator("#async-buffer").inner_text() == "0 / 2"
    # E's lease on version 1 holds no slot once no update on it can count.
    assert page.locator("#async-concurrency").inner_text() == "0 / 8"
    assert page.locator("#async-refused-stale").inner_text() == "1"
    assert page.locator("#async-rate").inner_text() == "0.30"  # 3 versions in 10 minutes
    bars = page.locator("#staleness-chart .staleness-bar")
    assert [
        (bars.nth(i).get_attribute("data-staleness"), bars.nth(i).get_attribute("data-count"))
        for i in range(bars.count())
    ] == [("0", "5"), ("1", "1")]
    page.locator("#round-row-3[data-state='closed']").wait_for(timeout=WAIT_MS)
    assert page.locator("#chart-caption").inner_text().startswith("Device accuracy over versions")
    screenshot(page, "dashboard-async")
    assert seen.errors == []
    page.close()


def test_sync_mode_hides_the_async_panel(browser: Browser, web_server: LiveServer) -> None:
    page, seen = open_dashboard(browser, web_server.url, VIEWPORT)
    assert page.locator("#aggregation").is_hidden()
    assert page.locator("#rounds-title").inner_text() == "Rounds"
    assert page.locator("#rounds th.round-only").first.is_visible()
    assert seen.errors == []
    page.close()
