"""The pages' security headers (issue 22): a Content-Security-Policy that the
pages pass, no framing, no MIME sniffing, no referrer to other origins.

Checked on the headers and in headless Chromium: the pages load under their
policy and report no violation (a ``securitypolicyviolation`` listener is
installed before any script of the page runs).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from playwright.sync_api import Browser

from tests.helpers.browser import watch
from tests.helpers.live_server import LiveServer
from tests.server.abuse.live import serve

PAGES = ["/", "/dashboard"]
COLLECT_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push(
    `${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
});
"""


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with serve(tmp_path_factory.mktemp("headers")) as server:
        yield server


def directives(policy: str) -> dict[str, list[str]]:
    parsed = {}
    for part in policy.split(";"):
        words = part.split()
        if words:
            parsed[words[0]] = words[1:]
    return parsed


@pytest.mark.parametrize("path", PAGES)
def test_the_pages_carry_a_strict_policy(live: LiveServer, path: str) -> None:
    response = requests.get(f"{live.url}{path}", timeout=10)

    policy = directives(response.headers["Content-Security-Policy"])
    assert policy["default-src"] == ["'self'"]
    assert "'unsafe-inline'" not in policy["script-src"]
    assert "'unsafe-eval'" not in policy["script-src"]
    assert policy["style-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["object-src"] == ["'none'"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_api_answers_carry_nosniff_and_no_framing(live: LiveServer) -> None:
    response = requests.get(f"{live.url}/v1/models", timeout=10)

    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert directives(response.headers["Content-Security-Policy"])["frame-ancestors"] == ["'none'"]


def test_the_pages_run_under_their_policy_without_a_violation(
    live: LiveServer, browser: Browser
) -> None:
    seen: dict[str, list[str]] = {}
    console: dict[str, list[str]] = {}
    for path in PAGES:
        page = browser.new_page()
        watched = watch(page)  # console errors: a violation is reported there too
        page.add_init_script(COLLECT_VIOLATIONS)
        page.goto(f"{live.url}{path}", wait_until="load")
        page.wait_for_timeout(1500)  # module scripts, their fetches and styles
        seen[path] = page.evaluate("window.__violations")
        console[path] = [e for e in watched.errors if "Content Security Policy" in e]
        page.close()

    assert seen == {path: [] for path in PAGES}
    assert console == {path: [] for path in PAGES}


def test_a_views_own_header_wins_and_is_not_doubled() -> None:
    """The defaults are added only where the answer has no header of that
    name, in any case of its letters; the others are added once each."""
    from flask import Flask, Response

    from fedge.server.http.security_headers import install_security_headers

    app = Flask("headers")

    @app.get("/own")
    def own() -> Response:
        return Response(
            "{}", mimetype="application/json", headers={"x-frame-options": "SAMEORIGIN"}
        )

    install_security_headers(app)
    response = app.test_client().get("/own")
    assert response.headers.getlist("X-Frame-Options") == ["SAMEORIGIN"]
    assert response.headers.getlist("X-Content-Type-Options") == ["nosniff"]
    assert response.headers.getlist("Referrer-Policy") == ["same-origin"]
    assert directives(response.headers["Content-Security-Policy"])["default-src"] == ["'none'"]
