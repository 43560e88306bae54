"""Headless Chromium for the page tests, driven by Playwright, always closed.

The browser is the system's Chromium (Debian's ``chromium`` package, which
the test setup installs; ``FEDGE_CHROMIUM`` names another binary): Playwright
cannot download its own browser here. :class:`PageWatch` records what a
page did: console errors, uncaught exceptions and every request it sent
(with its body), so tests can say "no console errors" and "no request
carried the raw examples". Screenshots go to ``artifacts/screenshots/``
(``FEDGE_TEST_ARTIFACTS`` moves it) and are kept as test artifacts.

Test scaffolding, not part of the installed package.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import Browser, ConsoleMessage, Page, Request, sync_playwright

REPO = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = (
    "--no-sandbox",  # the tests may run as root
    "--disable-background-networking",  # the machine's network is closed
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--enable-unsafe-swiftshader",  # WebGL in software, for the webgl backend
    # A camera for the pages' "Use camera": Chromium's fake device (a moving
    # test pattern), granted without a prompt.
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
)
PHONE = {"width": 390, "height": 844}


def chromium_path() -> str:
    named = os.environ.get("FEDGE_CHROMIUM")
    found = named or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise RuntimeError(
            "no Chromium for the browser tests: install Debian's `chromium` package "
            "(scripts/setup_browser.sh does it) or set FEDGE_CHROMIUM to a Chromium binary"
        )
    return found


def artifacts_dir() -> Path:
    root = Path(os.environ.get("FEDGE_TEST_ARTIFACTS", REPO / "artifacts"))
    out = root / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    return out


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(), args=list(CHROMIUM_FLAGS), headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


@dataclass(frozen=True)
class SentRequest:
    method: str
    url: str
    body: bytes


@dataclass
class PageWatch:
    """Everything a page reported or sent since :func:`watch`."""

    errors: list[str] = field(default_factory=list)
    requests: list[SentRequest] = field(default_factory=list)

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text} ({message.location})")

    def exception(self, error: Exception) -> None:
        self.errors.append(f"uncaught: {error}")

    def request(self, request: Request) -> None:
        body = request.post_data_buffer or b""
        self.requests.append(SentRequest(request.method, request.url, body))


def watch(page: Page) -> PageWatch:
    seen = PageWatch()
    page.on("console", seen.console)
    page.on("pageerror", seen.exception)
    page.on("request", seen.request)
    return seen


def screenshot(page: Page, name: str) -> Path:
    path = artifacts_dir() / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
