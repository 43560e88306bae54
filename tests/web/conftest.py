"""Fixtures for the browser tests: a digits bundle with its TF.js model, the
real server serving it (and the pages), and one headless Chromium."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fedge.converters.options import ConvertOptions
from fedge.reference.train import TrainConfig
from tests.helpers import shared_models
from tests.helpers.live_server import LiveServer, running
from tests.helpers.shared_models import trained_digits
from tests.web.any_models import Built, build


@pytest.fixture(scope="session")
def digits_keras(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference CNN, trained for a few epochs on the public split."""
    return trained_digits(tmp_path_factory, TrainConfig(epochs=6, seed=0))


@pytest.fixture(scope="session")
def digits_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Its bundle: TFLite (with the training artifact) and TF.js, parity checked."""
    options = ConvertOptions(targets=("tflite", "tfjs"))
    return shared_models.digits_bundle(tmp_path_factory, TrainConfig(epochs=6, seed=0), options)


@pytest.fixture
def web_server(tmp_path: Path, digits_bundle: Path) -> Iterator[LiveServer]:
    """``fedge serve --model BUNDLE``: rounds close at two updates."""
    args = ["--model", str(digits_bundle), "--rounds-target", "2", "--rounds-min", "2"]
    with running(tmp_path / "data", args, tmp_path / "server.log") as server:
        yield server


@pytest.fixture(scope="session")
def any_model(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Built]:
    """``any_model(kind)``: that kind's model and bundle, converted once per session."""
    root = tmp_path_factory.mktemp("any-models")
    built: dict[str, Built] = {}

    def get(kind: str) -> Built:
        if kind not in built:
            built[kind] = build(kind, root / kind)
        return built[kind]

    return get
