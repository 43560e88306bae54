"""The web SDK (``/sdk/fedge.js``) from a page that is not the demo: the
example app (``/examples/predict/``), in a real headless Chromium against a
real ``fedge serve`` of the tabular classifier (rounds close at one update).

Through ``FedgeClient``: connect (enrol), ``model`` as the manifest says,
``predict`` equal to Keras, ``addExample`` + ``joinRound`` (the round
closes on this update), a pushed release arriving as a ``release`` event and
swapped in. Bad input (a wrong input name, a wrong shape, NaN, a label out of
range, a server that is down, a tampered bundle) is a typed error with a
stable code, and stores nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import requests
from playwright.sync_api import Browser, Page

from tests.helpers.browser import screenshot, watch
from tests.helpers.live_server import LiveServer, running
from tests.helpers.release_api import ADMIN, TAR
from tests.helpers.release_bundles import bundle_tar
from tests.web.any_models import IRIS_LABELS, TABULAR_FEATURES, Built

TIMEOUT_MS = 90_000
EXAMPLE = "/examples/predict/index.html"
CODE = "(f) => f().then(() => 'ok', (e) => e.code || String(e))"


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, any_model: Any
) -> Iterator[tuple[Built, LiveServer]]:
    built = any_model("tabular_classifier")
    root = tmp_path_factory.mktemp("sdk")
    args = ["--model", str(built.bundle), "--rounds-target", "1", "--rounds-min", "1"]
    with running(root / "data", args, root / "server.log") as server:
        yield built, server


def second_bundle(built: Built) -> Any:
    """The same model with its weights moved a little: another bundle (TF.js only)."""
    import tensorflow as tf

    from fedge.converters.bundle import convert
    from fedge.converters.options import ConvertOptions

    out = built.bundle.parent / "second-bundle"
    if not out.exists():
        model = tf.keras.models.load_model(built.keras)
        model.set_weights([w + 0.01 for w in model.get_weights()])
        path = built.keras.parent / "second.keras"
        model.save(path)
        convert(path, out, ConvertOptions(targets=("tfjs",), labels=IRIS_LABELS))
    return out


def open_example(browser: Browser, server: LiveServer) -> tuple[Any, Page, Any]:
    context = browser.new_context()
    page = context.new_page()
    seen = watch(page)
    page.goto(server.url + EXAMPLE)
    page.wait_for_function("() => window.fedgeExample", timeout=TIMEOUT_MS)
    return context, page, seen


def code_of(page: Page, body: str) -> str:
    """The ``code`` of what the SDK threw running ``body`` (``client`` in scope), or 'ok'."""
    result: str = page.evaluate(
        f"async () => {{ const client = window.fedgeExample.client; "
        f"try {{ await ({body}); return 'ok'; }} catch (e) {{ return e.code || String(e); }} }}"
    )
    return result


def test_the_sdk_predicts_learns_and_follows_releases_from_another_page(
    served: tuple[Built, LiveServer], browser: Browser
) -> None:
    import tensorflow as tf

    built, server = served
    context, page, seen = open_example(browser, server)
    try:
        model = page.evaluate(
            "() => { const m = window.fedgeExample.client.model;"
            " return {inputs: m.inputs, outputs: m.outputs, trainable: m.trainable}; }"
        )
        assert model["inputs"][0]["name"] == "features"
        assert model["inputs"][0]["features"] == list(TABULAR_FEATURES)
        assert model["outputs"][0]["labels"] == list(IRIS_LABELS)
        assert model["trainable"] is True
        rows = built.rows["features"][:5]
        got = page.evaluate(
            "(rows) => window.fedgeExample.client.predict({features: rows})", rows.tolist()
        )
        keras = tf.keras.models.load_model(built.keras).predict(rows, verbose=0)
        assert np.abs(np.asarray(got["tier"]) - keras).max() < 1e-4
        # The example app's own form and button.
        for name, value in zip(TABULAR_FEATURES, rows[0], strict=True):
            page.locator(f"input[name={name}]").fill(f"{value:.6f}")
        page.click("#predict")
        page.wait_for_function("() => document.getElementById('answer').textContent !== ''")
        assert page.locator("#answer").inner_text() == IRIS_LABELS[int(np.argmax(keras[0]))]

        check_bad_input_is_a_typed_error(page, rows)

        for i, row in enumerate(rows[1:]):
            page.evaluate(
                "([r, l]) => window.fedgeExample.client.addExample({features: r}, l)",
                [row.tolist(), i % 3],
            )
        page.locator("#label").fill("2")
        page.click("#improve")
        page.wait_for_function(
            "() => /accepted$|^no task|^[a-z_]+: /"
            ".test(document.getElementById('log').textContent)",
            timeout=TIMEOUT_MS,
        )
        log = page.locator("#log").inner_text()
        assert log.startswith("round ") and log.endswith("accepted"), log
        round_id = int(log.split()[1].rstrip(":"))
        record = requests.get(f"{server.url}/v1/rounds/{round_id}", timeout=30).json()
        assert record["state"] in ("closing", "closed"), record  # one update closes it

        # A pushed release reaches the app as a "release" event, verified and swapped in.
        before = page.evaluate("() => window.fedgeExample.client.release.version")
        reply = requests.post(
            f"{server.url}/v1/releases",
            data=bundle_tar(second_bundle(built)),
            params={"rollout": "100"},
            headers={**ADMIN, "Content-Type": TAR},
            timeout=60,
        )
        assert reply.status_code in (200, 201), reply.text
        page.wait_for_function(
            f"() => document.getElementById('log').textContent.startsWith('now release')"
            f" && window.fedgeExample.client.release.version > {before}",
            timeout=TIMEOUT_MS,
        )
        # The one failed load is the deliberately unreachable server's.
        assert [e for e in seen.errors if "127.0.0.1:9/" not in e] == []
        screenshot(page, "sdk-example")
    finally:
        context.close()


def check_bad_input_is_a_typed_error(page: Page, rows: Any) -> None:
    row = rows[0].tolist()
    before = page.evaluate("() => window.fedgeExample.client.exampleCount()")
    cases = {
        "unknown_input": f"client.predict({{feature: [{row}]}})",
        "missing_input": "client.predict({})",
        "bad_shape": f"client.predict({{features: [{row[:5]}]}})",
        "not_finite": f"client.predict({{features: [[NaN, {', '.join(map(str, row[1:]))}]]}})",
        "bad_label": f"client.addExample({{features: {row}}}, 3)",
    }
    for code, body in cases.items():
        assert code_of(page, body) == code, body
    assert code_of(page, f"client.addExample({{features: {row}}}, -1)") == "bad_label"
    nan_example = f"client.addExample({{features: [NaN, {', '.join(map(str, row[1:]))}]}}, 0)"
    assert code_of(page, nan_example) == "not_finite"
    assert page.evaluate("() => window.fedgeExample.client.exampleCount()") == before
    down = "window.fedgeExample.FedgeClient.connect('http://127.0.0.1:9', {enrol: true})"
    assert code_of(page, down) == "server_unreachable"


def test_a_tampered_bundle_is_refused_and_nothing_is_cached(
    served: tuple[Built, LiveServer], browser: Browser
) -> None:
    server = served[1]
    context = browser.new_context()
    try:
        page = context.new_page()

        def tamper(route: Any) -> None:
            response = route.fetch()
            body = bytearray(response.body())
            body[-1] ^= 0xFF
            route.fulfill(response=response, body=bytes(body))

        page.route("**/v1/bundles/**/*.bin", tamper)
        # A page of the server's origin with no app on it (served by the test:
        # the server's own non-page responses forbid every script).
        page.route(
            "**/no-app.html",
            lambda route: route.fulfill(content_type="text/html", body="<!doctype html><p>"),
        )
        page.goto(server.url + "/no-app.html")
        page.add_script_tag(url="/vendor/tfjs/tf.min.js")
        code = page.evaluate(
            "async () => { const { FedgeClient } = await import('/sdk/fedge.js');"
            " try { await FedgeClient.connect(location.origin, {enrol: true}); return 'ok'; }"
            " catch (e) { return e.code || String(e); } }"
        )
        assert code == "checksum_mismatch"
        cached = page.evaluate(
            "() => new Promise((ok) => { const r = indexedDB.open('fedge-models', 1);"
            " r.onsuccess = () => { const tx = r.result.transaction('bundles');"
            " const all = tx.objectStore('bundles').getAll();"
            " all.onsuccess = () => ok(all.result.length); }; })"
        )
        assert cached == 0
    finally:
        context.close()
