"""Devices watch the live model: a drifted population raises the alert, a stable one does not.

A real ``fedge serve`` serving the reference digits model (TFLite bundle)
with 2-second windows; 10 Python devices, each with its own share of the
held-out digits, report through :class:`HealthReporter` what the
release's TFLite runtime makes of the examples they labelled, at the
server's pace. Window A sets the baseline, window B brings fresh examples
in the same style, window C the same devices' images in a new handwriting
style (inverted: dark strokes on a light page). Two seeds (different
splits and shares).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests

from fedge.client_sim.data.restyle import restyle
from fedge.client_sim.device.client import FedgeClient
from fedge.client_sim.device.health import HealthReporter
from fedge.client_sim.device.release_cache import ReleaseCache
from fedge.client_sim.device.releases import current_release
from fedge.client_sim.device.transport import HttpTransport
from fedge.converters.options import ConvertOptions
from fedge.reference.data import load_task
from fedge.reference.model import INPUT_NAME
from fedge.reference.train import TrainConfig
from fedge.task.examples import Examples
from fedge.task.objective import Objective
from fedge.wire.releases import Release
from tests.helpers import shared_models
from tests.helpers.live_server import LiveServer, running

WINDOW_S = 2.0
DEVICES = 10

# Ten devices report twice within a window of WINDOW_S seconds: on a loaded
# machine (parallel workers) a window can end mid-phase, so these run alone.
pytestmark = pytest.mark.serial


@pytest.fixture(scope="module")
def digits_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Read-only, shared by the run's workers: ``.parent / "digits.keras"`` is its model."""
    options = ConvertOptions(targets=("tflite",), verify=False)
    return shared_models.digits_bundle(tmp_path_factory, TrainConfig(epochs=6, seed=0), options)


@pytest.fixture
def server(digits_bundle: Path, tmp_path: Path) -> Iterator[LiveServer]:
    environ = {**os.environ, "FEDGE_HEALTH_WINDOW_S": str(WINDOW_S)}
    args = ["--model", str(digits_bundle)]
    with running(tmp_path / "data", args, tmp_path / "log", environ=environ) as live:
        yield live


def fresh_window() -> None:
    now = time.time()
    time.sleep(math.floor(now / WINDOW_S + 1) * WINDOW_S - now + 0.05)


def shares(seed: int) -> list[tuple[Examples, Examples]]:
    """Each device's two halves of its share of the held-out digits."""
    task = load_task(seed=seed)
    held = Examples.of_split(task.test, INPUT_NAME)
    order = np.random.default_rng(seed).permutation(len(held))
    parts = np.array_split(order, 2 * DEVICES)
    return [(held.take(parts[2 * i]), held.take(parts[2 * i + 1])) for i in range(DEVICES)]


@pytest.mark.parametrize("seed", [0, 1])
def test_a_drifted_population_raises_the_alert_and_a_stable_one_does_not(
    server: LiveServer, tmp_path: Path, seed: int
) -> None:
    cache = ReleaseCache(tmp_path / "releases", 2)
    objective = Objective(loss="sparse_categorical_crossentropy")
    devices: list[tuple[HealthReporter, Release]] = []
    for _ in range(DEVICES):
        client = FedgeClient(HttpTransport(server.url))
        client.enrol()
        release = current_release(client, None)
        assert release is not None
        devices.append((HealthReporter(client, objective, cache), release))
    data = shares(seed)

    outcomes = []
    for phase in ("baseline", "stable", "drifted"):
        fresh_window()
        for (reporter, release), (first, second) in zip(devices, data, strict=True):
            labelled = {
                "baseline": first,
                "stable": second,
                "drifted": restyle(first, "invert"),
            }[phase]
            outcomes.append(reporter.maybe_report(release, labelled))
            # At the server's pace: a second report in the same window waits.
            assert reporter.maybe_report(release, labelled) == "waiting"
    fresh_window()
    series = requests.get(f"{server.url}/v1/releases/1/health", timeout=30).json()
    events = requests.get(f"{server.url}/v1/events/poll?after=0&types=health", timeout=30).json()

    assert outcomes == ["reported"] * (3 * DEVICES)
    baseline, stable, drifted = series["windows"]
    assert (baseline["baseline"], baseline["devices"], baseline["alert"]) == (True, DEVICES, False)
    assert baseline["value"] > 0.8  # the model works on the style it was trained on
    assert not stable["alert"] and stable["votes"] <= 2
    assert abs(stable["drop"]) < 0.1 and stable["distance"] < 0.2
    assert drifted["alert"] and drifted["votes"] > DEVICES // 2
    assert drifted["drop"] > 0.3 and drifted["distance"] > 0.2
    (event,) = [e["data"] for e in events["events"]]
    assert (event["state"], event["window"], event["runtime"]) == (
        "raised",
        drifted["window"],
        "tflite",
    )
