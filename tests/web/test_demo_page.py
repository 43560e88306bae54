"""The demo page (``/``) in a real headless Chromium against a real ``fedge serve``.

A digit drawn with real mouse (and touch) input is read by the page as an
8x8 grid; the page's TF.js model must give what Keras gives on that same
grid, on every backend. The model is cached in IndexedDB (a reload
downloads no bundle file) and a release pushed through the admin API
replaces it in the open page without a reload. Figures (latency per
backend, load times) are printed; run with ``-rP`` (or ``-s``) to see them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from fedge.reference.data import FloatArray, load_task
from tests.helpers.browser import PHONE, PageWatch, screenshot, watch
from tests.helpers.live_server import LiveServer, running
from tests.helpers.release_api import ADMIN, TAR
from tests.helpers.release_bundles import bundle_tar

READY = "() => window.fedgeDemo && (window.fedgeDemo.ready || window.fedgeDemo.error)"
STATE = """async () => {
  await window.fedgeDemo.idle();
  const s = window.fedgeDemo;
  return JSON.parse(JSON.stringify({
    ready: s.ready, error: s.error, release: s.release, backend: s.backend,
    backendNote: s.backendNote, lastInput: s.lastInput, lastProbs: s.lastProbs,
    predicted: s.predicted, latency: s.latency, loadedFrom: s.loadedFrom,
    loadMs: s.loadMs, swaps: s.swaps,
  }));
}"""
# Page-side timing of n predictions on the current input (one inference each).
TIMINGS = """async (n) => {
  const input = window.fedgeDemo.lastInput;
  const ms = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await window.fedgeDemo.predict(input);
    ms.push(performance.now() - t);
  }
  return ms;
}"""
INK = 0.4  # reference cells at least this dark are stroked over


# --- fixtures ------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    image: FloatArray  # (8, 8) in [0, 1]
    label: int


@pytest.fixture(scope="module")
def keras_model(digits_keras: Path) -> Any:
    import tensorflow as tf

    return tf.keras.models.load_model(digits_keras)


@pytest.fixture(scope="module")
def reference_three(keras_model: Any) -> Reference:
    """The test split's 3 that the model is surest of: a clear 3."""
    test = load_task(seed=0).test
    threes = test.x[test.y == 3]
    sure = keras_model.predict(threes, verbose=0)[:, 3]
    return Reference(threes[int(np.argmax(sure))].reshape(8, 8), 3)


@pytest.fixture(scope="module")
def demo_server(
    tmp_path_factory: pytest.TempPathFactory, digits_bundle: Path
) -> Iterator[LiveServer]:
    """One server for the tests that do not change its releases."""
    root = tmp_path_factory.mktemp("demo-server")
    with running(root / "data", ["--model", str(digits_bundle)], root / "server.log") as server:
        yield server


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile: empty IndexedDB and localStorage."""
    opened = browser.new_context()
    try:
        yield opened
    finally:
        opened.close()


def open_demo(context: BrowserContext, url: str) -> tuple[Page, PageWatch]:
    page = context.new_page()
    seen = watch(page)
    page.goto(url)
    wait_ready(page)
    return page, seen


def wait_ready(page: Page) -> None:
    page.wait_for_function(READY, timeout=60_000)
    error = page.evaluate("window.fedgeDemo.error")
    assert error is None, error


def wait_for(page: Page, seen: PageWatch, condition: str, timeout_ms: int = 30_000) -> None:
    """Wait for a page condition; on a timeout, say what the page was doing."""
    # A function, not an expression: Playwright evaluates an expression with
    # eval(), which the pages' Content-Security-Policy refuses.
    predicate = condition if condition.startswith("(") else f"() => ({condition})"
    try:
        page.wait_for_function(predicate, timeout=timeout_ms)
    except PlaywrightTimeout:
        now = page.evaluate("JSON.stringify({...window.fedgeDemo, lastInput: undefined})")
        raise AssertionError(f"{condition} not met; page: {now}; errors: {seen.errors}") from None


def state(page: Page) -> dict[str, Any]:
    got: dict[str, Any] = page.evaluate(STATE)
    return got


def keras_probs(model: Any, grid: list[float]) -> FloatArray:
    x = np.asarray(grid, dtype=np.float32).reshape(1, 8, 8, 1)
    out: FloatArray = model.predict(x, verbose=0)[0]
    return out


def pad_box(page: Page) -> dict[str, float]:
    """The pad's drawing area (inside its border) in CSS pixels of the viewport."""
    box: dict[str, float] = page.evaluate(
        """() => {
          const c = document.getElementById('pad');
          const r = c.getBoundingClientRect();
          return {left: r.left + c.clientLeft, top: r.top + c.clientTop, size: c.clientWidth};
        }"""
    )
    return box


def strokes(image: FloatArray) -> list[tuple[int, int, int]]:
    """(row, first column, last column) of every horizontal run of inked cells."""
    runs = []
    for row in range(8):
        col = 0
        while col < 8:
            if image[row, col] >= INK:
                start = col
                while col + 1 < 8 and image[row, col + 1] >= INK:
                    col += 1
                runs.append((row, start, col))
            col += 1
    return runs


def draw_with_mouse(page: Page, image: FloatArray) -> None:
    """Stroke over the reference's inked cells with real mouse events."""
    box = pad_box(page)
    cell = box["size"] / 8

    def centre(row: int, col: int) -> tuple[float, float]:
        return box["left"] + (col + 0.5) * cell, box["top"] + (row + 0.5) * cell

    for row, first, last in strokes(image):
        page.mouse.move(*centre(row, first))
        page.mouse.down()
        page.mouse.move(*centre(row, last), steps=4 * (last - first) + 2)
        page.mouse.up()


def correlation(a: list[float], b: FloatArray) -> float:
    return float(np.corrcoef(np.asarray(a), b.reshape(-1))[0, 1])


# --- the page ------------------------------------------------------------------


def test_the_page_loads_with_no_console_errors_and_shows_release_and_backend(
    context: BrowserContext, demo_server: LiveServer
) -> None:
    page, seen = open_demo(context, demo_server.url)

    now = state(page)
    assert now["release"]["version"] == 1
    assert now["backend"] == "wasm"  # the default
    assert now["loadedFrom"] == "network"
    assert page.locator("#release-version").inner_text() == "Release 1"
    assert now["release"]["bundleId"][:12] in page.locator("#release-meta").inner_text()
    assert page.locator("#backend").input_value() == "wasm"
    assert "running on wasm" in page.locator("#backend-running").inner_text()
    assert page.locator("#latency-median").inner_text().endswith(" ms")
    assert page.locator("#probs li").count() == 10
    assert page.locator("section#federated").count() == 1
    assert page.evaluate("crossOriginIsolated") is True
    assert seen.errors == []
    screenshot(page, "demo")


def test_a_digit_drawn_with_the_mouse_gets_what_keras_gives(
    context: BrowserContext,
    demo_server: LiveServer,
    keras_model: Any,
    reference_three: Reference,
) -> None:
    page, seen = open_demo(context, demo_server.url)

    draw_with_mouse(page, reference_three.image)
    now = state(page)

    drawn = np.asarray(now["lastInput"])
    assert drawn.shape == (64,) and drawn.min() >= 0 and drawn.max() <= 1
    resemblance = correlation(now["lastInput"], reference_three.image)
    assert resemblance > 0.8
    expected = keras_probs(keras_model, now["lastInput"])
    assert now["predicted"] == int(np.argmax(expected)) == reference_three.label
    assert np.abs(np.asarray(now["lastProbs"]) - expected).max() < 1e-4
    assert page.locator("#predicted").inner_text() == "3"
    assert page.locator("#prob-3").get_attribute("class") == "top"
    assert seen.errors == []
    screenshot(page, "demo-drawn")
    print(f"drawn 3: correlation with the reference {resemblance:.3f}, p(3) {expected[3]:.3f}")

    page.click("#clear")
    cleared = state(page)
    assert cleared["lastInput"] == [0.0] * 64
    assert page.locator("#predicted").inner_text() == "\u2013"  # the blank placeholder


def test_every_backend_gives_the_same_probabilities(
    context: BrowserContext,
    demo_server: LiveServer,
    keras_model: Any,
    reference_three: Reference,
) -> None:
    page, seen = open_demo(context, demo_server.url)
    draw_with_mouse(page, reference_three.image)
    grid = state(page)["lastInput"]
    expected = keras_probs(keras_model, grid)
    figures = {}

    for name in ("cpu", "webgl", "wasm"):
        page.select_option("#backend", name)
        page.wait_for_function(f"() => window.fedgeDemo.backend === {json.dumps(name)}")
        now = state(page)
        timings = np.asarray(page.evaluate(TIMINGS, 60)[10:])  # after 10 warm-up runs

        assert now["lastInput"] == grid
        assert page.evaluate("tf.getBackend()") == name
        assert np.abs(np.asarray(now["lastProbs"]) - expected).max() < 1e-4, name
        assert now["backendNote"] == ""
        assert f"running on {name}" in page.locator("#backend-running").inner_text()
        figures[name] = (np.percentile(timings, 50), np.percentile(timings, 99))

    assert seen.errors == []
    for name, (p50, p99) in figures.items():
        print(f"inference {name:5s}: p50 {p50:.3f} ms, p99 {p99:.3f} ms (batch 1, 50 runs)")


def test_a_reload_takes_the_model_from_indexeddb(
    context: BrowserContext, demo_server: LiveServer
) -> None:
    page, seen = open_demo(context, demo_server.url)
    cold = state(page)
    assert cold["loadedFrom"] == "network"
    assert any("/tfjs/" in r.url for r in seen.requests)
    seen.requests.clear()

    page.reload()
    wait_ready(page)
    warm = state(page)

    assert warm["loadedFrom"] == "cache"
    assert warm["release"] == cold["release"]
    assert [r.url for r in seen.requests if "/v1/bundles/" in r.url] == []
    assert page.locator("#model-source").inner_text() == "from cache"
    assert "from cache" in page.locator("#load-info").inner_text()
    assert seen.errors == []
    print(f"model load: cold {cold['loadMs']:.1f} ms, from IndexedDB {warm['loadMs']:.1f} ms")


def test_a_cached_file_that_no_longer_matches_its_sha256_is_downloaded_again(
    context: BrowserContext, demo_server: LiveServer
) -> None:
    page, seen = open_demo(context, demo_server.url)
    # Flip one byte of the cached weight shard.
    page.evaluate(
        """() => new Promise((resolve, reject) => {
          const open = indexedDB.open('fedge-models');
          open.onsuccess = () => {
            const tx = open.result.transaction('bundles', 'readwrite');
            const store = tx.objectStore('bundles');
            store.getAll().onsuccess = (e) => {
              for (const entry of e.target.result) {
                const path = Object.keys(entry.files).find((p) => p.endsWith('.bin'));
                const bytes = new Uint8Array(entry.files[path]);
                bytes[100] ^= 0xff;
                entry.files[path] = bytes.buffer;
                store.put(entry);
              }
            };
            tx.oncomplete = () => resolve();
            tx.onerror = () => reject(tx.error);
          };
        })"""
    )
    seen.requests.clear()

    page.reload()
    wait_ready(page)

    assert state(page)["loadedFrom"] == "network"
    assert any(r.url.endswith(".bin") for r in seen.requests)
    assert seen.errors == []


def test_the_page_fits_a_phone_and_draws_with_touch(
    browser: Browser, demo_server: LiveServer
) -> None:
    phone = browser.new_context(
        viewport=ViewportSize(width=PHONE["width"], height=PHONE["height"]),
        device_scale_factor=3,
        is_mobile=True,
        has_touch=True,
    )
    try:
        page, seen = open_demo(phone, demo_server.url)
        box = pad_box(page)
        cdp = phone.new_cdp_session(page)

        def touch(kind: str, x: float, y: float) -> None:
            points = [] if kind == "touchEnd" else [{"x": x, "y": y}]
            cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

        y = box["top"] + box["size"] / 2
        touch("touchStart", box["left"] + box["size"] * 0.2, y)
        for step in range(1, 11):
            touch("touchMove", box["left"] + box["size"] * (0.2 + 0.06 * step), y)
        touch("touchEnd", 0, 0)
        now = state(page)

        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow == 0
        assert 250 < box["size"] <= PHONE["width"]
        grid = np.asarray(now["lastInput"]).reshape(8, 8)
        assert grid[3:5, 2:6].min() > 0.2  # the stroke's cells, across the middle
        assert grid[0].max() == 0 and grid[7].max() == 0  # nothing far from it
        assert page.evaluate("window.scrollY") == 0  # drawing did not scroll the page
        assert page.locator("#release-version").inner_text() == "Release 1"
        assert seen.errors == []
        screenshot(page, "demo-phone")
    finally:
        phone.close()


def test_a_backend_that_cannot_start_falls_back_with_a_visible_note(
    context: BrowserContext, demo_server: LiveServer
) -> None:
    context.route("**/*.wasm", lambda route: route.abort())

    page, seen = open_demo(context, demo_server.url)
    now = state(page)

    assert now["backend"] == "cpu"
    assert page.locator("#backend").input_value() == "cpu"
    note = page.locator("#backend-note")
    assert note.is_visible()
    assert "wasm could not start" in note.inner_text()
    assert "running on cpu" in note.inner_text()
    assert len(now["lastProbs"]) == 10
    # The only errors are the blocked .wasm files themselves.
    assert seen.errors and all(".wasm" in e for e in seen.errors), seen.errors


# --- a new release, live ----------------------------------------------------------


@pytest.fixture(scope="module")
def second_bundle(digits_keras: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same model with other weights (each weight nudged by noise)."""
    import tensorflow as tf

    from fedge.converters.bundle import convert
    from fedge.converters.options import ConvertOptions

    root = tmp_path_factory.mktemp("second-release")
    model = tf.keras.models.load_model(digits_keras)
    rng = np.random.default_rng(7)
    model.set_weights(
        [w + rng.normal(0, 0.05, w.shape).astype(w.dtype) for w in model.get_weights()]
    )
    model.save(root / "digits-v2.keras")
    convert(root / "digits-v2.keras", root / "bundle", ConvertOptions(targets=("tflite", "tfjs")))
    return root / "bundle"


def test_a_pushed_release_is_swapped_in_without_a_reload(
    context: BrowserContext,
    web_server: LiveServer,
    second_bundle: Path,
    keras_model: Any,
    reference_three: Reference,
) -> None:
    import tensorflow as tf

    page, seen = open_demo(context, web_server.url)
    draw_with_mouse(page, reference_three.image)
    before = state(page)
    tensors_before = page.evaluate("tf.memory().numTensors")
    page.evaluate("window.__marker = 1")
    assert page.locator("#notice").is_hidden()

    pushed = requests.post(
        f"{web_server.url}/v1/releases",
        data=bundle_tar(second_bundle),
        params={"rollout": "100", "notes": "nudged weights"},
        headers={**ADMIN, "Content-Type": TAR},
        timeout=60,
    )
    assert pushed.status_code == 201, pushed.text
    started = time.monotonic()
    wait_for(page, seen, "window.fedgeDemo.swaps === 1")
    swapped_in_s = time.monotonic() - started
    after = state(page)

    assert page.evaluate("window.__marker") == 1  # the same document: no reload
    assert after["release"]["version"] == 2
    assert after["release"]["channel"] == "canary"
    assert after["loadedFrom"] == "network"
    notice = page.locator("#notice")
    assert notice.is_visible()
    assert "Release 2 is live on this page" in notice.inner_text()
    assert page.locator("#release-version").inner_text() == "Release 2"
    new_model = tf.keras.models.load_model(second_bundle / "keras" / "model.keras")
    assert after["lastInput"] == before["lastInput"]
    new_expected = keras_probs(new_model, after["lastInput"])
    assert np.abs(np.asarray(after["lastProbs"]) - new_expected).max() < 1e-4
    old_expected = keras_probs(keras_model, after["lastInput"])
    assert np.abs(np.asarray(after["lastProbs"]) - old_expected).max() > 1e-3
    # The old model was disposed: as many tensors as before the swap.
    assert page.evaluate("tf.memory().numTensors") == tensors_before

    promoted = requests.post(
        f"{web_server.url}/v1/admin/releases/2/promote",
        json={"why": "the demo page runs it"},
        headers=ADMIN,
        timeout=30,
    )
    assert promoted.status_code == 200, promoted.text
    wait_for(page, seen, "window.fedgeDemo.release.channel === 'live'")
    assert state(page)["swaps"] == 1  # the same bundle: nothing downloaded again
    # The federated part hears of it too: the page no longer offers a canary evaluation.
    wait_for(page, seen, "document.getElementById('fed-canary').hidden === true")
    assert seen.errors == []
    screenshot(page, "demo-release-2")
    print(f"release 2 swapped in {swapped_in_s:.2f} s after the push answered")
