"""The dashboard on the web SDK, and its event stream as the admin.

The dashboard's modules read the server only through the SDK's
``FedgeObserver`` (imported from ``/sdk/fedge.js``). With an admin token
(sessionStorage, set from the topbar field) its stream is a ``fetch`` with
``Authorization``, counted as the admin's, not the address's: a real server
gives one address at most two streams, so with the dashboard open two
anonymous streams from the same address still get in, a third is refused
(429), and the dashboard keeps following events (a pushed release appears).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Browser

from tests.helpers.browser import REPO, watch
from tests.helpers.live_server import LiveServer
from tests.helpers.release_bundles import bundle_tar

ADMIN_TOKEN = "admin-secret"
WAIT_MS = 30_000
DASHBOARD_JS = REPO / "web" / "static" / "js" / "dashboard"


@pytest.fixture
def second_bundle(digits_keras: Path, tmp_path: Path) -> bytes:
    """Another bundle of the served model (a new conversion: a new bundle id), as pushed."""
    from fedge.converters.bundle import convert
    from fedge.converters.options import ConvertOptions

    result = convert(digits_keras, tmp_path / "v2", ConvertOptions(targets=("tflite",)))
    return bundle_tar(result.path)


def test_the_dashboard_reads_the_server_only_through_the_sdk() -> None:
    modules = sorted(DASHBOARD_JS.glob("*.js"))
    importing = [
        m.name for m in modules if 'import { FedgeObserver } from "/sdk/fedge.js"' in m.read_text()
    ]
    reaching = [m.name for m in modules if re.search(r"\bfetch\(|new EventSource\b", m.read_text())]

    assert importing == ["dashboard.js", "dashboard_health.js"]
    assert reaching == []


def test_with_an_admin_token_the_dashboard_streams_as_the_admin(
    browser: Browser, web_server: LiveServer, second_bundle: bytes
) -> None:
    url = web_server.url
    page = browser.new_page()
    seen = watch(page)
    # The token as the field leaves it: in this tab's sessionStorage.
    page.add_init_script(f"sessionStorage.setItem('fedge.adminToken', '{ADMIN_TOKEN}')")
    page.goto(f"{url}/dashboard")
    page.wait_for_function(
        "() => window.fedgeDashboard && window.fedgeDashboard.live === 'live'"
        " && window.fedgeDashboard.refreshes > 0",
        timeout=WAIT_MS,
    )
    assert page.evaluate("window.fedgeDashboard.stream") == "admin"
    assert page.locator("#admin-token-note").inner_text() == "stream as admin"
    assert ADMIN_TOKEN not in page.url

    held: list[requests.Response] = []
    try:
        for _ in range(2):  # this address's two streams: the dashboard holds none of them
            opened = requests.get(f"{url}/v1/events", stream=True, timeout=30)
            held.append(opened)
            assert opened.status_code == 200, opened.text
        third = requests.get(f"{url}/v1/events", stream=True, timeout=30)
        held.append(third)
        assert third.status_code == 429
        assert third.json()["code"] == "too_many_streams"

        # The dashboard's own stream still delivers: a pushed release shows up.
        pushed = requests.post(
            f"{url}/v1/releases",
            data=second_bundle,
            params={"notes": "seen by the admin stream"},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/x-tar"},
            timeout=120,
        )
        assert pushed.status_code == 201, pushed.text
        version = pushed.json()["version"]
        page.locator(f"#release-row-{version}").wait_for(timeout=WAIT_MS)
        types = page.evaluate("window.fedgeDashboard.events.map((e) => e.type)")
        assert "release" in types
    finally:
        for response in held:
            response.close()
    assert seen.errors == []
    page.close()


def test_the_token_field_keeps_the_token_in_the_tab_and_says_when_it_is_refused(
    browser: Browser, web_server: LiveServer
) -> None:
    page = browser.new_page()
    seen = watch(page)
    page.goto(f"{web_server.url}/dashboard")
    page.wait_for_function("() => window.fedgeDashboard?.live === 'live'", timeout=WAIT_MS)
    assert page.evaluate("window.fedgeDashboard.stream") == "anonymous"

    page.fill("#admin-token", "not-the-token")
    page.click("#admin-token-form button")
    page.wait_for_function(
        "() => document.getElementById('admin-token-note').textContent === 'admin token refused'",
        timeout=WAIT_MS,
    )
    assert page.evaluate("window.fedgeDashboard.live") == "offline"

    page.fill("#admin-token", ADMIN_TOKEN)
    page.click("#admin-token-form button")
    page.wait_for_function(
        "() => window.fedgeDashboard.live === 'live'"
        " && document.getElementById('admin-token-note').textContent === 'stream as admin'",
        timeout=WAIT_MS,
    )
    assert page.evaluate("sessionStorage.getItem('fedge.adminToken')") == ADMIN_TOKEN
    assert page.evaluate("localStorage.getItem('fedge.adminToken')") is None
    assert ADMIN_TOKEN not in page.url
    assert page.input_value("#admin-token") == ""
    # The refused token's 401 is the only console error the page shows.
    assert all("401" in error for error in seen.errors), seen.errors
    page.close()
