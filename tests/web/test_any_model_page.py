"""The demo page (``/``) for models that are not the digits CNN, built from
their manifest, in a real headless Chromium against a real ``fedge serve``.

For each kind (a tabular classifier, a tabular regressor with a
Normalization layer, a 32x32x3 image model, a two-input model) the page
must start with no console error, offer one widget per manifest input
named as the manifest names it (feature names from a CSV header or
``--feature-names``), and predict what Keras predicts on what was filled
in (1e-4). A screenshot of each kind is kept as an artifact.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from tests.helpers.browser import PageWatch, screenshot, watch
from tests.helpers.live_server import LiveServer, running
from tests.web.any_models import IRIS_LABELS, REGRESSOR_FEATURES, TABULAR_FEATURES, Built

READY = "() => window.fedgeDemo && (window.fedgeDemo.ready || window.fedgeDemo.error)"
KINDS = ("tabular_classifier", "tabular_regressor", "image_rgb", "two_inputs")
FIELD_NAMES = {
    "tabular_classifier": list(TABULAR_FEATURES),
    "tabular_regressor": list(REGRESSOR_FEATURES),
    "two_inputs": ["sensor[0]", "sensor[1]", "sensor[2]", "context[0]", "context[1]"],
}


@pytest.fixture(scope="module", params=KINDS)
def served(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    any_model: Any,
) -> Iterator[tuple[Built, LiveServer]]:
    built = any_model(request.param)
    root = tmp_path_factory.mktemp(f"serve-{built.kind}")
    with running(root / "data", ["--model", str(built.bundle)], root / "server.log") as server:
        yield built, server


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    opened = browser.new_context(viewport={"width": 1100, "height": 900})
    try:
        yield opened
    finally:
        opened.close()


def open_page(context: BrowserContext, url: str) -> tuple[Page, PageWatch]:
    page = context.new_page()
    seen = watch(page)
    page.goto(url)
    page.wait_for_function(READY, timeout=60_000)
    return page, seen


def keras_outputs(built: Built, inputs: dict[str, Any]) -> list[np.ndarray[Any, Any]]:
    import tensorflow as tf

    model = tf.keras.models.load_model(built.keras)
    names = [t.name.split(":")[0] for t in model.inputs]
    arrays = [np.asarray(inputs[n], np.float32)[None] for n in names]
    out = model.predict(arrays if len(arrays) > 1 else arrays[0], verbose=0)
    return [np.asarray(o)[0] for o in (out if isinstance(out, list) else [out])]


def fill(page: Page, built: Built, tmp_path: Path) -> dict[str, Any]:
    """Fill the page's widgets with the first sample row; returns what was filled in."""
    if built.kind == "image_rgb":
        from PIL import Image

        pixels = (built.rows["photo"][0] * 255).round().astype(np.uint8)
        path = tmp_path / "photo.png"
        Image.fromarray(pixels, "RGB").save(path)
        page.get_by_label("photo: an image file").set_input_files(str(path))
        return {"photo": pixels.astype(np.float32) / 255.0}
    filled: dict[str, Any] = {}
    names = iter(FIELD_NAMES[built.kind])
    for input_name, rows in built.rows.items():
        row = np.round(rows[0].astype(np.float64), 3)
        for value in row:
            page.get_by_label(next(names), exact=True).fill(f"{value:.3f}")
        filled[input_name] = row.astype(np.float32)
    return filled


def test_the_page_offers_the_manifests_inputs_and_predicts_what_keras_predicts(
    served: tuple[Built, LiveServer], context: BrowserContext, tmp_path: Path
) -> None:
    built, server = served
    page, seen = open_page(context, server.url + "/")
    assert page.evaluate("window.fedgeDemo.error") is None
    assert page.locator("#pad").is_hidden()  # the digits canvas is the reference model's only
    if built.kind in FIELD_NAMES:
        shown = page.locator("#inputs label .feature").all_inner_texts()
        assert shown == FIELD_NAMES[built.kind]

    filled = fill(page, built, tmp_path)
    page.evaluate("() => window.fedgeDemo.idle()")
    got = page.evaluate("() => window.fedgeDemo.lastOutputs")
    fed = page.evaluate("() => window.fedgeDemo.lastInputs")

    for name, value in filled.items():
        np.testing.assert_allclose(np.asarray(fed[name]).reshape(value.shape), value, atol=1e-6)
    (expected,) = keras_outputs(built, filled)
    (output,) = got.values()
    assert np.abs(np.asarray(output).reshape(expected.shape) - expected).max() < 1e-4
    if built.kind == "tabular_classifier":
        best = IRIS_LABELS[int(np.argmax(expected))]
        assert page.locator("#predicted").inner_text() == best
    if built.kind == "tabular_regressor":
        assert page.locator("#predicted").inner_text() == f"{float(expected[0]):.4g}"
    assert seen.errors == []
    screenshot(page, f"demo-{built.kind}")


@pytest.fixture(scope="module")
def image_served(
    tmp_path_factory: pytest.TempPathFactory, any_model: Any
) -> Iterator[tuple[Built, LiveServer]]:
    built = any_model("image_rgb")
    root = tmp_path_factory.mktemp("serve-image-drawn")
    with running(root / "data", ["--model", str(built.bundle)], root / "server.log") as server:
        yield built, server


def test_an_image_drawn_on_the_pad_is_what_the_model_sees(
    image_served: tuple[Built, LiveServer], context: BrowserContext
) -> None:
    """An image input also takes a drawing (real mouse strokes): dark ink on
    white, resized to the input's 32x32x3 and scaled; the page predicts
    what Keras predicts on exactly those values, and clearing the drawing
    leaves no input."""
    built, server = image_served
    page, seen = open_page(context, server.url + "/")
    pad = page.get_by_label("Draw photo")
    box = pad.bounding_box()
    assert box is not None

    page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.5)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.8, box["y"] + box["height"] * 0.5, steps=12)
    page.mouse.up()
    page.evaluate("() => window.fedgeDemo.idle()")
    fed = np.asarray(page.evaluate("() => window.fedgeDemo.lastInputs")["photo"], np.float32)
    got = page.evaluate("() => window.fedgeDemo.lastOutputs")

    image = fed.reshape(32, 32, 3)
    assert image[0].min() == 1.0  # the top row: white paper
    assert image[16].min() < 0.5  # the middle row: the stroke's dark ink
    (expected,) = keras_outputs(built, {"photo": image})
    (output,) = got.values()
    assert np.abs(np.asarray(output).reshape(expected.shape) - expected).max() < 1e-4
    screenshot(page, "demo-image_rgb-drawn")

    page.get_by_role("button", name="Clear drawing").click()
    assert "choose, draw or take an image for photo" in page.locator("#confidence").inner_text()
    assert seen.errors == []


def test_a_camera_snapshot_is_what_the_model_sees(
    image_served: tuple[Built, LiveServer], context: BrowserContext
) -> None:
    """An image input also takes a camera snapshot (Chromium's fake camera,
    getUserMedia): the whole frame resized to 32x32x3 and scaled like a file;
    the page feeds exactly the preview canvas's pixels, scaled, and predicts
    what Keras predicts on them; "Stop camera" releases the camera."""
    built, server = image_served
    page, seen = open_page(context, server.url + "/")
    page.get_by_role("button", name="Use camera").click()
    page.get_by_role("button", name="Take snapshot").wait_for(timeout=30_000)
    page.wait_for_function(
        "() => document.querySelector('.input-video').readyState >= 2", timeout=30_000
    )
    page.get_by_role("button", name="Take snapshot").click()
    page.evaluate("() => window.fedgeDemo.idle()")
    fed = np.asarray(page.evaluate("() => window.fedgeDemo.lastInputs")["photo"], np.float32)
    got = page.evaluate("() => window.fedgeDemo.lastOutputs")
    rgba = np.asarray(
        page.evaluate(
            "() => Array.from(document.querySelector('canvas.input-preview')"
            ".getContext('2d').getImageData(0, 0, 32, 32).data)"
        ),
        np.float32,
    ).reshape(32, 32, 4)

    image = fed.reshape(32, 32, 3)
    # This model's pixels are 0..1 (as the file upload test feeds them).
    np.testing.assert_allclose(image, rgba[..., :3] / 255, atol=1e-6)
    assert image.std() > 0.01  # a picture, not a blank frame
    (expected,) = keras_outputs(built, {"photo": image})
    (output,) = got.values()
    assert np.abs(np.asarray(output).reshape(expected.shape) - expected).max() < 1e-4
    assert "snapshot taken" in page.locator(".input-camera [role=status]").inner_text()
    screenshot(page, "demo-image_rgb-camera")

    page.get_by_role("button", name="Stop camera").click()
    assert page.get_by_role("button", name="Use camera").is_visible()
    assert page.evaluate("() => document.querySelector('.input-video').srcObject") is None
    assert seen.errors == []
