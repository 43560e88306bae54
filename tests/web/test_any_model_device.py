"""The demo page as a federated device for models that are not the digits
CNN, in a real headless Chromium against a real ``fedge serve`` whose
rounds close at one update.

For each trainable kind (a tabular classifier, a tabular regressor with a
Normalization layer, a 32x32x3 image model, a two-input model) labelled
examples (class ids, or target values for the regressor) join a round; the
page's update is what a Keras epoch of the same SGD gives, and the round's
new checkpoint is the base plus that update. The Normalization layer's
statistics (fedge's own TF.js layer) stay as they are. The receipt shows
the local loss and metric before and after. A GRU regressor's bundle is a
TF.js graph model (tfjs-layers has no reset_after GRU): the page says it
only predicts, and offers no training. Bad examples (a label out of range,
a NaN input) are refused with a typed error and store nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import requests
from playwright.sync_api import Browser

from fedge.wire.update_codec import decode_update
from fedge.wire.weight_spec import ModelSpec, Weights
from tests.helpers.browser import screenshot, watch
from tests.helpers.checkpoints import fetch_checkpoint
from tests.helpers.live_server import LiveServer, running
from tests.web.any_models import Built

TIMEOUT_MS = 90_000
KINDS = ("tabular_classifier", "image_rgb", "two_inputs", "tabular_regressor", "gru_regressor")
CLASSES = {"tabular_classifier": 3, "image_rgb": 4, "two_inputs": 2}


def house_price(row: Any) -> float:
    """The regressor's target for a row of its features (rooms, area, ...)."""
    return float(row[1] / 50 - row[0])


# Regressors' targets: a value per example, from its own features.
TARGETS: dict[str, Callable[[Any], float]] = {"tabular_regressor": house_price}


@pytest.fixture(scope="module", params=KINDS)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, any_model: Any
) -> Iterator[tuple[Built, LiveServer]]:
    built = any_model(request.param)
    root = tmp_path_factory.mktemp(f"device-{built.kind}")
    args = ["--model", str(built.bundle), "--rounds-target", "1", "--rounds-min", "1"]
    with running(root / "data", args, root / "server.log") as server:
        yield built, server


def wait_for_round(server: LiveServer, round_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        reply = requests.get(f"{server.url}/v1/rounds/{round_id}", timeout=30)
        record: dict[str, Any] = reply.json()
        if record["state"] not in ("open", "closing"):
            return record
        time.sleep(0.2)
    raise AssertionError(f"round {round_id} did not close: {record}")


def keras_epoch(
    model: Any, spec: ModelSpec, base: Weights, built: Built, labels: list[Any], config: Any
) -> Weights:
    """The round's SGD in Keras, from ``base``, on the same examples in order."""
    import tensorflow as tf

    n = len(labels)
    model.set_weights(spec.values(base))
    model.compile(
        optimizer=tf.keras.optimizers.SGD(config["learning_rate"]),
        loss="mean_squared_error" if built.kind in TARGETS else "sparse_categorical_crossentropy",
    )
    inputs = [rows[:n] for rows in built.rows.values()]
    model.fit(
        inputs if len(inputs) > 1 else inputs[0],
        np.asarray(labels, dtype=np.float32 if built.kind in TARGETS else np.int64),
        batch_size=config["batch_size"],
        epochs=config["local_epochs"],
        shuffle=False,
        verbose=0,
    )
    return spec.named([np.asarray(v) for v in model.get_weights()])


def check_it_only_predicts(page: Any, seen: Any, built: Built) -> None:
    """A graph-model bundle: the page says why it cannot train, and offers no training."""
    note = page.locator("#fed-label-note").inner_text()
    assert "only predicts" in note and "graph model" in note
    assert page.get_by_role("button", name="Help improve the model").is_disabled()
    assert seen.errors == []
    screenshot(page, f"device-{built.kind}")


def examples_and_bad_labels(built: Built, n: int) -> tuple[list[Any], tuple[Any, ...]]:
    """The labels of the first ``n`` rows, and labels the page must refuse."""
    if built.kind in TARGETS:
        (rows,) = built.rows.values()
        return [TARGETS[built.kind](row) for row in rows[:n]], ("1.5", [1.0, 2.0], None)
    classes = CLASSES[built.kind]
    return [i % classes for i in range(n)], (classes, -1, 0.5)


ADD = "([x, l]) => window.fedgeFederated.addExample(x, l).then(() => 'stored', e => e.code)"


def check_bad_examples_are_refused(page: Any, built: Built, bad_labels: tuple[Any, ...]) -> None:
    """A label out of range or not a class id (not a finite target value
    for a regressor), and a NaN input: a typed error each, and nothing stored."""
    first = {name: rows[0].reshape(-1).tolist() for name, rows in built.rows.items()}
    for bad_label in bad_labels:
        assert page.evaluate(ADD, [first, bad_label]) == "bad_label"
    name = next(iter(first))
    nan_row = {**first, name: [None, *first[name][1:]]}  # null: not a number
    good = 0.5 if built.kind in TARGETS else 0
    assert page.evaluate(ADD, [nan_row, good]) == "not_finite"
    assert page.evaluate(ADD, [{**first, "nope": [1.0]}, good]) == "unknown_input"
    assert page.evaluate(ADD, [{name: first[name][:-1]}, good]) in ("bad_shape", "missing_input")
    assert page.evaluate("() => window.fedgeFederated.allExamples()") == []


def test_labelled_examples_join_a_round_whose_aggregate_is_the_keras_update(
    served: tuple[Built, LiveServer], browser: Browser
) -> None:
    import tensorflow as tf

    built, server = served
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    try:
        page = context.new_page()
        seen = watch(page)
        page.goto(server.url + "/")
        page.wait_for_function(
            "() => window.fedgeFederated && window.fedgeFederated.ready", timeout=TIMEOUT_MS
        )
        if built.kind == "gru_regressor":
            check_it_only_predicts(page, seen, built)
            return
        names = list(built.rows)
        n = 8
        labels, bad_labels = examples_and_bad_labels(built, n)
        check_bad_examples_are_refused(page, built, bad_labels)
        for i in range(n):
            row = {name: built.rows[name][i].reshape(-1).tolist() for name in names}
            page.evaluate("([x, l]) => window.fedgeFederated.addExample(x, l)", [row, labels[i]])
        assert page.evaluate("() => window.fedgeFederated.examples") == n
        page.evaluate("() => { window.fedgeFederated.settings.shuffle = false; }")

        page.get_by_role("button", name="Help improve the model").click()
        page.wait_for_function(
            "() => window.fedgeFederated.lastOutcome || window.fedgeFederated.error",
            timeout=TIMEOUT_MS,
        )
        assert page.evaluate("() => window.fedgeFederated.error") is None
        outcome = page.evaluate("() => window.fedgeFederated.lastOutcome")
        assert outcome["status"] == "contributed"

        model = tf.keras.models.load_model(built.keras)
        spec = ModelSpec.from_keras(model)
        (body,) = [r.body for r in seen.requests if r.url.endswith("/updates")]
        update = decode_update(body, spec)
        token = page.evaluate("() => JSON.parse(localStorage.getItem('fedge.device')).token")
        base = fetch_checkpoint(server.url, token, update.meta.base_checkpoint, spec)
        record = wait_for_round(server, outcome["round_id"])
        assert record["state"] == "closed"
        new = fetch_checkpoint(server.url, token, record["result_checkpoint"], spec)
        config = record["config"]
        trained = keras_epoch(model, spec, base, built, labels, config)
        for name in spec.names:
            keras_delta = trained[name] - base[name]
            np.testing.assert_allclose(update.deltas[name], keras_delta, atol=2e-6)
            np.testing.assert_allclose(new[name] - base[name], keras_delta, atol=2e-6)
            # Training moves every weight but a Normalization layer's statistics.
            assert (np.abs(keras_delta).max() > 0) == (name not in spec.constant_names), name
        assert set(spec.constant_names) == (
            {"norm/mean", "norm/variance", "norm/count"} if built.kind in TARGETS else set()
        )
        metrics = update.meta.metrics
        metric = "mae" if built.kind in TARGETS else "accuracy"
        assert set(metrics) == {metric, f"{metric}_before", "loss", "loss_after", "loss_before"}
        facts = page.locator("#fed-receipt-facts").inner_text()
        assert "Local loss" in facts
        assert f"{metrics['loss_before']:.4f} → {metrics['loss_after']:.4f}" in facts
        assert seen.errors == []
        screenshot(page, f"device-{built.kind}")
    finally:
        context.close()
