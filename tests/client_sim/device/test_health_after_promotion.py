"""The health baseline is the release's canary numbers (issue 23).

A population that drifts right after a promotion has no clean first
window to compare with: with the first window as the only baseline, the
alert was never raised (the drifted window *became* the baseline). Each
device's canary evaluation of the release (the candidate's loss, metric
and predictions on its own held-out examples) is its baseline now, so the
first window after the promotion is judged.

A real ``fedge serve`` with release 1 live; 10 Python devices are in the
slice of release 2 (the same model, pushed again), evaluate it with the
bundle's TFLite runtime on one half of their share of the held-out digits
and report; an admin promotes it. In the first window after that, the
devices report on the other half: in the trained style (stable) or
inverted (a new handwriting style).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from fedge.client_sim.data.restyle import restyle
from fedge.client_sim.device.client import FedgeClient
from fedge.client_sim.device.health import HealthReporter, predictions_of
from fedge.client_sim.device.release_cache import ReleaseCache
from fedge.client_sim.device.releases import current_release, report_evaluation
from fedge.client_sim.device.transport import HttpTransport
from fedge.converters.bundle import convert
from fedge.converters.options import ConvertOptions
from fedge.task.examples import Examples
from fedge.task.objective import Objective
from fedge.wire.canary import Evaluation
from tests.client_sim.device.test_device_health import (
    DEVICES,
    WINDOW_S,
    digits_bundle,
    fresh_window,
    shares,
)
from tests.helpers.live_server import LiveServer, running
from tests.helpers.release_api import ADMIN
from tests.helpers.release_bundles import bundle_tar

# Devices report within windows of WINDOW_S seconds: on a loaded
# machine (parallel workers) a window can end mid-phase, so these run alone.
pytestmark = pytest.mark.serial

__all__ = ["digits_bundle"]  # the module's fixture (trained once per run)

OBJECTIVE = Objective(loss="sparse_categorical_crossentropy")
SETTINGS = {
    "FEDGE_HEALTH_WINDOW_S": str(WINDOW_S),
    # Devices enrolled before the push count without an update; no decision
    # before 50 devices, so the admin's promotion is the one that happens.
    "FEDGE_CANARY_REQUIRE_HISTORY": "false",
    "FEDGE_CANARY_MIN_REPORTS": "50",
}


@pytest.fixture(scope="module")
def second_bundle(digits_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same model again as release 2 (a bundle of its own: version "2")."""
    out = tmp_path_factory.mktemp("second") / "bundle-2"  # digits_bundle's folder is shared
    options = ConvertOptions(targets=("tflite",), verify=False, version="2")
    convert(digits_bundle.parent / "digits.keras", out, options)
    return out


@pytest.fixture
def server(digits_bundle: Path, tmp_path: Path) -> Iterator[LiveServer]:
    environ = {**os.environ, **SETTINGS}
    args = ["--model", str(digits_bundle)]
    with running(tmp_path / "data", args, tmp_path / "log", environ=environ) as live:
        yield live


def canary_report(
    client: FedgeClient, cache: ReleaseCache, held_out: Examples, predictions: bool
) -> None:
    """Evaluate the candidate on the device's held-out examples, as a canary device does."""
    release = current_release(client, None, "tflite")
    assert release is not None and (release.version, release.channel) == (2, "canary")
    cache.bundle(client, release)
    with cache.runtime(release.bundle_id) as runtime:
        outputs = runtime.predict(held_out.x)
    scores = OBJECTIVE.evaluate(outputs, held_out.y)
    extra = {"predictions": predictions_of(outputs)} if predictions else {}
    evaluation = Evaluation(
        baseline_version=1,
        metric=OBJECTIVE.metric,
        candidate=scores,
        baseline=scores,
        num_examples=len(held_out),
        latency_ms=1.0,
        using="candidate",
        runtime="tflite",
        **extra,  # type: ignore[arg-type]
    )
    report_evaluation(client, 2, evaluation)


@pytest.mark.parametrize(
    ("style", "predictions"),
    [("inverted", True), ("inverted", False), ("trained", True)],
)
def test_a_population_drifting_right_after_promotion_raises_the_alert(
    server: LiveServer, second_bundle: Path, tmp_path: Path, style: str, predictions: bool
) -> None:
    cache = ReleaseCache(tmp_path / "releases", 2)
    clients = []
    for _ in range(DEVICES):
        client = FedgeClient(HttpTransport(server.url))
        client.enrol()
        clients.append(client)
    pushed = requests.post(
        f"{server.url}/v1/releases",
        data=bundle_tar(second_bundle),
        params={"rollout": 100},
        headers={**ADMIN, "Content-Type": "application/x-tar"},
        timeout=60,
    )
    assert pushed.status_code == 201, pushed.text
    data = shares(0)
    for client, (first, _) in zip(clients, data, strict=True):
        canary_report(client, cache, first, predictions)
    promoted = requests.post(
        f"{server.url}/v1/admin/releases/2/promote", json={}, headers=ADMIN, timeout=30
    )
    assert promoted.status_code == 200, promoted.text

    fresh_window()
    for client, (_, second) in zip(clients, data, strict=True):
        release = current_release(client, None, "tflite")
        assert release is not None and (release.version, release.channel) == (2, "live")
        labelled = restyle(second, "invert") if style == "inverted" else second
        reporter = HealthReporter(client, OBJECTIVE, cache)
        assert reporter.maybe_report(release, labelled) == "reported"
    fresh_window()
    series = requests.get(f"{server.url}/v1/releases/2/health", timeout=30).json()
    events = requests.get(f"{server.url}/v1/events/poll?after=0&types=health", timeout=30).json()

    (first_window,) = series["windows"]
    assert first_window["devices"] == first_window["voters"] == DEVICES
    raised = [e["data"] for e in events["events"] if e["data"]["state"] == "raised"]
    if style == "inverted":
        assert first_window["alert"] and first_window["votes"] > DEVICES // 2
        assert first_window["drop"] > 0.3
        assert (raised[0]["version"], raised[0]["window"]) == (2, first_window["window"])
        assert raised[0]["baseline_value"] > 0.8  # the canary's numbers
    else:
        assert not first_window["alert"] and first_window["votes"] <= 2
        assert abs(first_window["drop"]) < 0.1 and first_window["distance"] < 0.2
        assert raised == []
    if predictions:
        assert first_window["distance"] is not None
