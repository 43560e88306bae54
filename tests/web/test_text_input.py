"""Text for a token sequence input, when the bundle carries a vocabulary.

A small token classifier (Embedding, GlobalAveragePooling, Dense) converted
with a vocabulary (``ConvertOptions.vocabularies``, what ``fedge convert
--vocabulary`` sets) is served by a real ``fedge serve``; the page in
headless Chromium offers a text field, shows the ids it made (lowercased,
split on anything but letters and digits, 1 for an unknown word, padded
with 0 to the input's length) and predicts what Keras predicts on those
ids (1e-4).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from playwright.sync_api import Browser

from tests.helpers.browser import screenshot, watch
from tests.helpers.live_server import LiveServer, running
from tests.web.any_models import TEXT_VOCABULARY, Built
from tests.web.test_any_model_page import READY, keras_outputs

LENGTH = 8


@pytest.fixture(scope="module")
def text_served(
    tmp_path_factory: pytest.TempPathFactory, any_model: Any
) -> Iterator[tuple[Built, LiveServer]]:
    built = any_model("text_classifier")
    root = tmp_path_factory.mktemp("serve-text")
    with running(root / "data", ["--model", str(built.bundle)], root / "server.log") as server:
        yield built, server


def ids_of(text: str) -> list[int]:
    """The tokenisation the page promises, written again here."""
    ids = {token: i + 2 for i, token in enumerate(TEXT_VOCABULARY)}
    words = re.findall(r"[^\W_]+", text.lower())[:LENGTH]
    return [ids.get(w, 1) for w in words] + [0] * (LENGTH - len(words))


def test_the_bundle_carries_the_vocabulary_sealed(text_served: tuple[Built, LiveServer]) -> None:
    built, _ = text_served
    manifest = json.loads((built.bundle / "manifest.json").read_text())
    assert manifest["vocabularies"] == {"tokens": ["", "[UNK]", *TEXT_VOCABULARY]}


def test_text_is_tokenised_as_shown_and_predicts_what_keras_predicts(
    text_served: tuple[Built, LiveServer], browser: Browser
) -> None:
    built, server = text_served
    page = browser.new_page()
    seen = watch(page)
    page.goto(server.url + "/")
    page.wait_for_function(READY, timeout=60_000)
    assert page.evaluate("window.fedgeDemo.error") is None
    text = "The RED cat, sat on the zebra!"
    page.get_by_label("tokens: text").fill(text)
    page.evaluate("() => window.fedgeDemo.idle()")
    fed = page.evaluate("() => window.fedgeDemo.lastInputs")["tokens"]
    got = page.evaluate("() => window.fedgeDemo.lastOutputs")

    expected_ids = ids_of(text)
    assert expected_ids == [2, 10, 3, 5, 7, 2, 1, 0]  # "zebra" is unknown: 1
    assert fed == expected_ids
    shown = page.locator(".token-ids").inner_text()
    assert shown.startswith("ids: 2 10 3 5 7 2 1 0")
    assert "not known: zebra" in shown
    (expected,) = keras_outputs(built, {"tokens": np.asarray(expected_ids, np.int32)})
    (output,) = got.values()
    assert np.abs(np.asarray(output).reshape(expected.shape) - expected).max() < 1e-4
    screenshot(page, "demo-text_classifier")

    # Words past the input's length are dropped, and said so.
    page.get_by_label("tokens: text").fill("the cat " * 6)
    page.evaluate("() => window.fedgeDemo.idle()")
    assert page.evaluate("() => window.fedgeDemo.lastInputs")["tokens"] == [2, 3] * 4
    assert "4 word(s) past 8 dropped" in page.locator(".token-ids").inner_text()
    # No words: no input, and nothing predicted on it.
    page.get_by_label("tokens: text").fill(" ,;! ")
    assert "write some text for tokens" in page.locator("#confidence").inner_text()
    assert seen.errors == []
    page.close()
