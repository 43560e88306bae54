"""The demo page as a federated device, in a real headless Chromium against
the real ``fedge serve``.

Each test drives ``/`` (demo.js mounts federated_ui.js), stores labelled
examples in the page's IndexedDB, and checks what the page sent with the
server's own codec (:mod:`fedge.wire.update_codec`) and with Keras:

* an update written in the page decodes against the model's spec, carries
  the Python devices' metadata, and its deltas are what a Keras epoch of the
  same SGD on the same examples gives;
* two tabs (two browser contexts: two devices) close a round, and the new
  global checkpoint is the base plus the example-weighted mean of their
  deltas (FedAvg, server learning rate 1);
* no request of either page carries a stored example, in any form;
* a page in a candidate release's canary slice reports an evaluation of
  numbers only, which the server stores, equal to what Keras gives.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import requests
from playwright.sync_api import Browser, BrowserContext, Page
from sklearn.datasets import load_digits

from fedge.task.objective import Objective
from fedge.wire.update_codec import decode_update
from fedge.wire.weight_spec import ModelSpec, Weights
from tests.helpers.browser import PageWatch, screenshot, watch
from tests.helpers.checkpoints import fetch_checkpoint
from tests.helpers.live_server import LiveServer
from tests.helpers.release_api import ADMIN, TAR
from tests.helpers.release_bundles import bundle_tar

TIMEOUT_MS = 90_000
SPARSE = Objective("sparse_categorical_crossentropy")
Pixels = npt.NDArray[np.float32]
Labels = npt.NDArray[np.int64]


@dataclass
class Tab:
    """One device: its own browser context (localStorage, IndexedDB) and page."""

    context: BrowserContext
    page: Page
    seen: PageWatch

    def state(self, expression: str) -> Any:
        return self.page.evaluate(f"() => window.fedgeFederated.{expression}")

    def add_examples(self, x: Pixels, y: Labels) -> int:
        count = 0
        for pixels, label in zip(x, y, strict=True):
            count = self.page.evaluate(
                "([p, l]) => window.fedgeFederated.addExample(p, l)",
                [pixels.tolist(), int(label)],
            )
        return int(count)

    def token(self) -> str:
        saved = self.page.evaluate("() => JSON.parse(localStorage.getItem('fedge.device'))")
        return str(saved["token"])

    def contribute_by_click(self) -> dict[str, Any]:
        """Press "Help improve the model"; the outcome once the page is done."""
        self.page.get_by_role("button", name="Help improve the model").click()
        self.page.wait_for_function(
            "() => window.fedgeFederated.lastOutcome || window.fedgeFederated.error",
            timeout=TIMEOUT_MS,
        )
        assert self.state("error") is None
        outcome: dict[str, Any] = self.state("lastOutcome")
        return outcome

    def stored_example_forms(self) -> list[bytes]:
        """Every form a stored example could take in a request body: its
        float32 and float64 bytes, and the JSON of its pixels and record."""
        stored = self.page.evaluate(
            "async () => (await window.fedgeFederated.allExamples()).map((e) => ({"
            " pixels: Array.from(e.pixels), label: e.label,"
            " json: JSON.stringify(Array.from(e.pixels)),"
            " record: JSON.stringify({pixels: Array.from(e.pixels), label: e.label}) }))"
        )
        forms: list[bytes] = []
        for example in stored:
            pixels = np.asarray(example["pixels"], dtype=np.float64)
            forms += [
                pixels.astype("<f4").tobytes(),
                pixels.astype("<f8").tobytes(),
                example["json"].encode(),
                example["record"].encode(),
                json.dumps(example["pixels"]).encode(),
            ]
        return forms

    def close(self) -> None:
        self.context.close()


def open_device_tab(browser: Browser, url: str) -> Tab:
    """The demo page at ``url`` in a new browser context, once it is ready."""
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    seen = watch(page)
    page.goto(url + "/")
    page.wait_for_function(
        "() => window.fedgeFederated && window.fedgeFederated.ready", timeout=TIMEOUT_MS
    )
    return Tab(context, page, seen)


@pytest.fixture(scope="module")
def digits() -> tuple[Pixels, Labels]:
    """scikit-learn's 8x8 digits as the page's inputs: 64 floats in [0, 1]."""
    data = load_digits()
    return (data.images / 16.0).astype(np.float32).reshape(-1, 64), data.target.astype(np.int64)


@pytest.fixture(scope="module")
def keras_model(digits_keras: Path) -> Any:
    import tensorflow as tf

    return tf.keras.models.load_model(digits_keras)


@pytest.fixture
def open_tab(browser: Browser, web_server: LiveServer) -> Iterator[Any]:
    tabs: list[Tab] = []

    def open_one() -> Tab:
        tab = open_device_tab(browser, web_server.url)
        tabs.append(tab)
        return tab

    yield open_one
    for tab in tabs:
        tab.close()


def keras_weights(model: Any, spec: ModelSpec) -> Weights:
    return spec.named([np.asarray(v) for v in model.get_weights()])


def uploads(seen: PageWatch) -> list[bytes]:
    return [r.body for r in seen.requests if r.method == "POST" and r.url.endswith("/updates")]


def wait_for_round(server: LiveServer, round_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        reply = requests.get(f"{server.url}/v1/rounds/{round_id}", timeout=30)
        record: dict[str, Any] = reply.json()
        if record["state"] not in ("open", "closing"):
            return record
        time.sleep(0.2)
    raise AssertionError(f"round {round_id} did not close: {record}")


def draw_a_stroke(page: Page) -> None:
    """A vertical stroke on the drawing pad with real mouse events."""
    box = page.locator("#pad").bounding_box()
    assert box is not None
    x = box["x"] + box["width"] * 0.5
    page.mouse.move(x, box["y"] + box["height"] * 0.2)
    page.mouse.down()
    for step in range(1, 11):
        page.mouse.move(x, box["y"] + box["height"] * (0.2 + 0.06 * step))
    page.mouse.up()
    page.evaluate("() => window.fedgeDemo.idle()")


def keras_epoch(
    model: Any, base: list[npt.NDArray[Any]], inputs: Pixels, labels: Labels, task: dict[str, Any]
) -> tuple[dict[str, float], float, dict[str, float]]:
    """What a round's training does in Keras, from ``base`` and in order:
    the scores before, the mean training loss, the scores after."""
    import tensorflow as tf

    model.set_weights(base)
    before = SPARSE.evaluate(model.predict(inputs, verbose=0), labels)
    model.compile(
        optimizer=tf.keras.optimizers.SGD(task["learning_rate"]),
        loss="sparse_categorical_crossentropy",
    )
    history = model.fit(
        inputs,
        labels,
        batch_size=task["batch_size"],
        epochs=task["local_epochs"],
        shuffle=False,
        verbose=0,
    )
    after = SPARSE.evaluate(model.predict(inputs, verbose=0), labels)
    return before, float(np.mean(history.history["loss"])), after


def check_training_timings(tab: Tab, probe: Pixels) -> None:
    """Local training time per epoch on cpu and webgl, printed; it trains a
    copy, so the page's model and backend are as they were."""
    page = tab.page
    user_backend = page.evaluate("() => window.fedgeDemo.backend")
    served = page.evaluate("(p) => window.fedgeDemo.predict(p)", probe.tolist())
    tensors = page.evaluate("() => tf.memory().numTensors")
    for backend in ("cpu", "webgl"):
        timing = page.evaluate(
            "(b) => window.fedgeFederated.benchmarkTraining({backend: b, epochs: 3})", backend
        )
        assert timing["backend"] == backend
        assert len(timing["epochMs"]) == 3
        epochs = ", ".join(f"{ms:.0f}" for ms in timing["epochMs"])
        print(f"\nlocal training, {timing['examples']} examples, {backend}: {epochs} ms per epoch")
        assert page.evaluate("() => tf.getBackend()") == user_backend
    after = page.evaluate("(p) => window.fedgeDemo.predict(p)", probe.tolist())
    assert after == pytest.approx(served)
    # The training copy, its optimizer and the data were all disposed.
    assert page.evaluate("() => tf.memory().numTensors") == tensors


def correct_a_drawing(tab: Tab, label: int) -> list[float]:
    """One correction through the page itself: a drawing, then "That's a
    <label>"; the drawing's 64 inputs, as stored."""
    page = tab.page
    draw_a_stroke(page)
    drawn: list[float] = page.evaluate("() => window.fedgeDemo.lastInput")
    assert sum(drawn) > 0
    page.get_by_role("button", name=f"That's a {label}").click()
    page.wait_for_function("() => window.fedgeFederated.examples === 1")
    (stored,) = page.evaluate(
        "async () => (await window.fedgeFederated.allExamples()).map("
        "(e) => ({label: e.label, pixels: Array.from(e.pixels)}))"
    )
    assert stored["label"] == label
    assert np.allclose(stored["pixels"], drawn, atol=1e-7)
    return drawn


def check_asking_again_is_refused(tab: Tab) -> None:
    """A second contribution in the same round: no task, and the page says why."""
    tab.page.evaluate("() => { window.fedgeFederated.lastOutcome = null; }")
    again = tab.contribute_by_click()
    assert again["status"] == "no_task"
    assert again["reason"] == "already_contributed"
    assert "already sent its update" in tab.page.locator("#fed-log").inner_text()
    assert len(uploads(tab.seen)) == 1


def test_an_update_from_the_page_decodes_and_is_a_keras_epoch(
    open_tab: Any, web_server: LiveServer, digits: Any, keras_model: Any
) -> None:
    x, y = digits
    tab = open_tab()
    page = tab.page
    drawn = correct_a_drawing(tab, 7)
    count = tab.add_examples(x[:23], y[:23])
    assert count == 24
    assert "24 examples" in page.locator("#fed-count").inner_text()
    page.evaluate("() => { window.fedgeFederated.settings.shuffle = false; }")

    outcome = tab.contribute_by_click()

    assert outcome["status"] == "contributed"
    (body,) = uploads(tab.seen)
    spec = ModelSpec.from_keras(keras_model)
    update = decode_update(body, spec)
    receipt = outcome["receipt"]
    assert receipt["digest"] == hashlib.sha256(body).hexdigest()
    assert update.meta.round_id == receipt["round_id"] == outcome["round_id"]
    assert update.meta.num_examples == receipt["num_examples"] == 24
    assert update.meta.base_checkpoint == outcome["base_checkpoint"]
    assert set(update.meta.metrics) == {
        "accuracy",
        "accuracy_before",
        "loss",
        "loss_after",
        "loss_before",
    }
    assert update.meta.metrics == pytest.approx(outcome["metrics"], abs=1e-12)
    assert tab.state("lastUpdate.num_examples") == 24
    # The same SGD epoch in Keras, from the same checkpoint, on the same examples in order.
    base = fetch_checkpoint(web_server.url, tab.token(), update.meta.base_checkpoint, spec)
    config = requests.get(f"{web_server.url}/v1/rounds/{update.meta.round_id}", timeout=30).json()[
        "config"
    ]
    inputs = np.concatenate([np.asarray(drawn, np.float32)[None], x[:23]]).reshape(-1, 8, 8, 1)
    labels = np.concatenate([[7], y[:23]])
    before, loss, after = keras_epoch(keras_model, spec.values(base), inputs, labels, config)
    trained = keras_weights(keras_model, spec)
    for name in spec.names:
        np.testing.assert_allclose(update.deltas[name], trained[name] - base[name], atol=2e-6)
        assert np.abs(update.deltas[name]).max() > 0, name
    metrics = update.meta.metrics
    assert metrics["loss"] == pytest.approx(loss, abs=1e-5)
    assert metrics["loss_before"] == pytest.approx(before["loss"], abs=1e-5)
    assert metrics["accuracy_before"] == pytest.approx(before["accuracy"])
    assert metrics["loss_after"] == pytest.approx(after["loss"], abs=1e-4)
    assert metrics["accuracy"] == pytest.approx(after["accuracy"])
    # The receipt is on the page; asking again in the same round is refused, with the reason.
    shown = page.locator("#fed-receipt-facts dd").all_inner_texts()
    assert shown[0] == str(receipt["round_id"])
    assert shown[1] == "24"
    assert receipt["digest"][:16] in shown[2]
    check_asking_again_is_refused(tab)
    # Training ran on cpu and the user's backend is back.
    assert outcome["backend"] == "cpu"
    user_backend = page.evaluate("() => window.fedgeDemo.backend")
    assert page.evaluate("() => tf.getBackend()") == user_backend
    check_training_timings(tab, probe=x[500])
    assert tab.seen.errors == []


def test_two_tabs_close_a_round_whose_checkpoint_is_the_weighted_mean(
    open_tab: Any, web_server: LiveServer, digits: Any, keras_model: Any
) -> None:
    x, y = digits
    first, second = open_tab(), open_tab()
    assert first.token() != second.token()
    first.add_examples(x[100:116], y[100:116])
    second.add_examples(x[200:240], y[200:240])
    assert first.state("examples") == 16
    assert second.state("examples") == 40

    outcomes = [first.contribute_by_click(), second.contribute_by_click()]

    assert [o["status"] for o in outcomes] == ["contributed", "contributed"]
    assert outcomes[0]["round_id"] == outcomes[1]["round_id"]
    spec = ModelSpec.from_keras(keras_model)
    updates = [decode_update(uploads(tab.seen)[0], spec) for tab in (first, second)]
    assert [u.meta.num_examples for u in updates] == [16, 40]
    record = wait_for_round(web_server, outcomes[0]["round_id"])
    assert record["state"] == "closed"
    assert record["metrics"]["strategy"] == "fedavg"  # w + 1.0 * weighted mean
    assert record["metrics"]["updates"] == 2
    assert record["metrics"]["examples"] == 56
    token = first.token()
    base = fetch_checkpoint(web_server.url, token, updates[0].meta.base_checkpoint, spec)
    new = fetch_checkpoint(web_server.url, token, record["result_checkpoint"], spec)
    # Weights are num_examples (capped at max_example_weight, 100; two updates: no share cap).
    total = 16 + 40
    for name in spec.names:
        mean = (
            16 * updates[0].deltas[name].astype(np.float64)
            + 40 * updates[1].deltas[name].astype(np.float64)
        ) / total
        np.testing.assert_allclose(new[name] - base[name], mean, atol=1e-6, rtol=0)
        assert np.abs(mean).max() > 1e-4, name
    # No request body of either page carries a stored example in any form.
    for tab in (first, second):
        forms = tab.stored_example_forms()
        assert len(forms) == 5 * tab.state("examples")
        bodies = [r.body for r in tab.seen.requests if r.body]
        assert any(len(b) > 100_000 for b in bodies)  # the update itself was seen
        for body in bodies:
            for form in forms:
                assert form not in body
    screenshot(second.page, "device-receipt")
    assert "Receipt" in second.page.locator("#federated").inner_text()
    assert first.seen.errors == []
    assert second.seen.errors == []


@pytest.fixture(scope="module")
def candidate_bundle(
    digits_keras: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """A second release of the same model: the weights moved a little."""
    import tensorflow as tf

    from fedge.converters.bundle import convert
    from fedge.converters.options import ConvertOptions

    model = tf.keras.models.load_model(digits_keras)
    rng = np.random.default_rng(1)
    model.set_weights(
        [w + rng.normal(0, 0.05, w.shape).astype(np.float32) for w in model.get_weights()]
    )
    root = tmp_path_factory.mktemp("candidate")  # digits_keras's folder is shared
    path = root / "candidate.keras"
    model.save(path)
    out = root / "candidate-bundle"
    convert(path, out, ConvertOptions(targets=("tflite", "tfjs")))
    return path, out


def test_a_canary_page_reports_an_evaluation_of_numbers_only(
    open_tab: Any,
    web_server: LiveServer,
    digits: Any,
    digits_keras: Path,
    candidate_bundle: tuple[Path, Path],
) -> None:
    import tensorflow as tf

    x, y = digits
    tab = open_tab()
    tab.add_examples(x[300:340], y[300:340])
    assert tab.page.evaluate("() => window.fedgeDemo.release.channel") == "live"
    assert tab.page.locator("#fed-canary").is_hidden()

    # Push release 2 to every device (100 %): this page is in its canary slice.
    pushed = requests.post(
        f"{web_server.url}/v1/releases",
        data=bundle_tar(candidate_bundle[1]),
        params={"rollout": "100"},
        headers={**ADMIN, "Content-Type": TAR},
        timeout=120,
    )
    assert pushed.status_code == 201, pushed.text
    version = pushed.json()["version"]
    tab.page.wait_for_function(
        "(v) => window.fedgeFederated.lastEvaluation?.version === v || window.fedgeFederated.error",
        arg=version,
        timeout=TIMEOUT_MS,
    )
    assert tab.state("error") is None
    assert tab.page.evaluate("() => window.fedgeDemo.release.channel") == "canary"
    reported = tab.state("lastEvaluation")

    stored = requests.get(
        f"{web_server.url}/v1/releases/{version}/evaluations", headers=ADMIN, timeout=30
    ).json()
    (evaluation,) = stored["evaluations"]
    body = reported["body"]
    sent = [
        json.loads(r.body)
        for r in tab.seen.requests
        if r.method == "POST" and r.url.endswith(f"/v1/releases/{version}/evaluations")
    ]
    assert sent == [body]
    assert set(body) == {
        "baseline_version",
        "metric",
        "candidate",
        "baseline",
        "num_examples",
        "latency_ms",
        "using",
        "runtime",
        "parity",
        "predictions",
    }
    # What the candidate predicted on the 40 examples (issue 23: the device's
    # health baseline once the candidate is live): a histogram of its classes.
    assert body["predictions"]["quantiles"] is None
    assert len(body["predictions"]["histogram"]) == 10
    assert sum(body["predictions"]["histogram"]) == 40
    assert evaluation["predictions"] == body["predictions"]
    # Parity on the page's own TF.js backend (issue 23): the bundle's golden
    # samples give the source model's outputs here too.
    backend = tab.page.evaluate("() => tf.getBackend()")
    assert body["runtime"] == f"tfjs-{backend}"
    assert body["parity"]["samples"] == 32
    assert body["parity"]["top1_agreement"] == 1.0
    assert 0 <= body["parity"]["max_abs_error"] < 1e-3
    assert (evaluation["runtime"], evaluation["parity"]) == (body["runtime"], body["parity"])
    shown_parity = requests.get(f"{web_server.url}/v1/releases/{version}", timeout=30).json()
    assert set(shown_parity["parity"]) <= {f"tfjs-{backend}"}  # counted devices only
    assert body["metric"] == "accuracy"
    assert body["baseline_version"] == 1
    assert body["num_examples"] == 40
    assert body["using"] == "candidate"
    assert 0 < body["latency_ms"] < 1000
    for field in ("candidate", "baseline", "num_examples", "baseline_version", "latency_ms"):
        assert evaluation[field] == body[field], field
    assert stored["canary"]["reports"] == 1
    # The numbers are Keras' on the same examples.
    inputs = x[300:340].reshape(-1, 8, 8, 1)
    for model_path, key in ((candidate_bundle[0], "candidate"), (digits_keras, "baseline")):
        model = tf.keras.models.load_model(model_path)
        expected = SPARSE.evaluate(model.predict(inputs, verbose=0), y[300:340])
        assert body[key]["accuracy"] == pytest.approx(expected["accuracy"])
        assert body[key]["loss"] == pytest.approx(expected["loss"], abs=1e-4)
    assert body["candidate"] != body["baseline"]
    shown = tab.page.locator("#fed-canary").inner_text()
    assert f"release {version} vs live release 1" in shown
    # Nothing but these numbers: no example went out.
    forms = tab.stored_example_forms()
    for request in tab.seen.requests:
        for form in forms:
            assert form not in request.body
    screenshot(tab.page, "device-canary")
    assert tab.seen.errors == []
