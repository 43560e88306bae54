"""Parity on the devices' own runtimes, end to end (issue 23): a release
whose TF.js weights were altered after conversion, and the manifest
resealed so the bundle verifies, is kept off the browser devices while the
TFLite devices get it.

Real ``fedge serve``, two headless Chromium pages (two devices, TF.js on
their backend) and three Python devices that run the bundle's golden
samples on the TFLite interpreter (:mod:`fedge.client_sim.device.parity`),
all over real HTTP. The canary keeps collecting (50 reports needed), so
what is shown is the gate, not a decision.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from playwright.sync_api import Browser, ViewportSize

from fedge.bundle.hashing import sha256_file
from fedge.bundle.manifest import MANIFEST_FILE, Manifest, verify_bundle, write_manifest
from fedge.client_sim.device.parity import golden_parity
from fedge.client_sim.device.trainers import TfliteTrainer
from fedge.server.api.events import STREAMS_GAUGE
from tests.helpers.browser import screenshot
from tests.helpers.live_server import LiveServer, serving_model
from tests.helpers.metrics import wait_for_metric
from tests.helpers.release_api import ADMIN, TAR
from tests.helpers.release_bundles import bundle_tar
from tests.web.test_browser_device import TIMEOUT_MS, Tab, digits, open_device_tab
from tests.web.test_dashboard import open_dashboard

__all__ = ["digits"]  # a module fixture, shared
DESKTOP = ViewportSize(width=1200, height=900)
SETTINGS = {"FEDGE_CANARY_MIN_REPORTS": "50", "FEDGE_CANARY_REQUIRE_HISTORY": "false"}


@pytest.fixture(scope="module")
def tampered(digits_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The served model's bundle, relabelled as a new version (so it is a
    new bundle), with every TF.js weight negated, its manifest's hash of the
    shard rewritten and the manifest resealed: a bundle that verifies and
    whose TF.js model computes something else than its source."""
    out = tmp_path_factory.mktemp("tampered") / "bundle"
    shutil.copytree(digits_bundle, out)
    manifest = replace(
        Manifest.from_json(json.loads((out / MANIFEST_FILE).read_text())), version="2-tampered"
    )
    tfjs = manifest.artifacts["tfjs"]
    for record in tfjs["files"]:
        if record["path"].endswith(".bin"):
            shard = out / record["path"]
            weights = np.fromfile(shard, dtype="<f4")
            (-weights).astype("<f4").tofile(shard)
            record["sha256"] = sha256_file(shard)
    write_manifest(out, manifest)
    verify_bundle(out)  # sealed: nothing tells the bundle from an honest one
    return out


@pytest.fixture
def server(tmp_path: Path, digits_bundle: Path) -> Iterator[LiveServer]:
    with serving_model(tmp_path, digits_bundle, SETTINGS) as live:
        yield live


def open_tab(browser: Browser, server: LiveServer) -> Tab:
    return open_device_tab(browser, server.url)


def current(server: LiveServer, token: str, runtime: str) -> dict[str, Any]:
    reply = requests.get(
        f"{server.url}/v1/releases/current",
        params={"runtime": runtime},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    shown: dict[str, Any] = reply.json()
    return shown


def tflite_report(server: LiveServer, token: str, bundle: Path) -> requests.Response:
    """A Python device's canary report with its parity on TFLite."""
    manifest = Manifest.from_json(json.loads((bundle / MANIFEST_FILE).read_text()))
    runtime = TfliteTrainer(bundle / "tflite" / "train.tflite", manifest.weights)
    parity = golden_parity(bundle, runtime)
    assert parity is not None
    body = {
        "baseline_version": 1,
        "metric": "accuracy",
        "candidate": {"loss": 0.3, "accuracy": 0.9},
        "baseline": {"loss": 0.3, "accuracy": 0.9},
        "num_examples": 20,
        "latency_ms": 0.2,
        "using": "candidate",
        "runtime": "tflite",
        "parity": {
            "max_abs_error": parity.max_abs_error,
            "top1_agreement": parity.top1_agreement,
            "samples": parity.samples,
        },
    }
    return requests.post(
        f"{server.url}/v1/releases/2/evaluations",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def test_a_release_with_broken_tfjs_weights_is_kept_off_the_browsers(
    browser: Browser,
    server: LiveServer,
    digits: Any,
    tampered: Path,
) -> None:
    x, y = digits
    tabs = [open_tab(browser, server) for _ in range(2)]
    try:
        for i, tab in enumerate(tabs):
            tab.add_examples(x[300 + 40 * i : 340 + 40 * i], y[300 + 40 * i : 340 + 40 * i])
        phones = [
            requests.post(f"{server.url}/v1/devices", json={"platform": "t"}, timeout=30).json()[
                "token"
            ]
            for _ in range(3)
        ]
        pushed = requests.post(
            f"{server.url}/v1/releases",
            data=bundle_tar(tampered),
            params={"rollout": "100"},
            headers={**ADMIN, "Content-Type": TAR},
            timeout=120,
        )
        assert pushed.status_code == 201, pushed.text
        for tab in tabs:  # each page evaluates the candidate on its backend and reports
            tab.page.wait_for_function(
                "() => window.fedgeFederated.lastEvaluation?.version === 2"
                " || window.fedgeFederated.error",
                timeout=TIMEOUT_MS,
            )
            assert tab.state("error") is None
        sent = [tab.state("lastEvaluation")["body"] for tab in tabs]
        reports = [tflite_report(server, token, tampered) for token in phones]
        shown = requests.get(f"{server.url}/v1/releases/2", timeout=30).json()
        backend = tabs[0].page.evaluate("() => tf.getBackend()")
        runtime = f"tfjs-{backend}"
        for tab in tabs:  # the pages ask again: the server sends them release 1
            tab.page.evaluate("() => window.fedgeDemo.checkRelease()")
        served = [tab.page.evaluate("() => window.fedgeDemo.release") for tab in tabs]
        browser_gets = [current(server, tab.token(), runtime) for tab in tabs]
        phone_gets = [current(server, token, "tflite") for token in phones]
        errors = [tab.seen.errors for tab in tabs]
    finally:
        for tab in tabs:
            tab.close()
    # The pages closed, each holding one of this address's two event streams:
    # once the server has let them go, the dashboard's stream opens and shows parity.
    wait_for_metric(server.url, STREAMS_GAUGE, 0)
    dashboard, dashboard_seen = open_dashboard(browser, server.url, DESKTOP)
    try:
        row = dashboard.locator("#canary-row-2 td.parity")
        row.wait_for(timeout=TIMEOUT_MS)
        lines = {
            str(line.get_attribute("data-runtime")): (
                line.get_attribute("data-ok"),
                line.inner_text(),
            )
            for line in row.locator("div").all()
        }
        screenshot(dashboard, "dashboard-parity")
        errors.append(dashboard_seen.errors)
    finally:
        dashboard.close()

    assert [r.status_code for r in reports] == [201] * 3, reports[0].text
    for body in sent:
        assert body["runtime"] == runtime
        assert body["parity"]["top1_agreement"] < 0.5
        assert body["parity"]["max_abs_error"] > 0.1
    browsers, phones_parity = shown["parity"][runtime], shown["parity"]["tflite"]
    assert (browsers["devices"], browsers["failing"], browsers["ok"]) == (2, 2, False)
    assert (phones_parity["devices"], phones_parity["failing"], phones_parity["ok"]) == (3, 0, True)
    assert phones_parity["max_error"] < 1e-4 and phones_parity["agreement"] == 1.0
    assert shown["state"] == "canary"
    assert [(g["version"], g["channel"]) for g in browser_gets] == [(1, "live")] * 2
    assert [(g["version"], g["channel"]) for g in phone_gets] == [(2, "canary")] * 3
    assert [(s["version"], s["channel"]) for s in served] == [(1, "live")] * 2
    assert errors == [[], [], []]
    # The dashboard shows parity per runtime.
    assert set(lines) == {runtime, "tflite"}
    assert lines[runtime][0] == "false" and f"{runtime} failed: 2/2 failing" in lines[runtime][1]
    assert lines["tflite"][0] == "true" and "tflite ok: 0/3 failing" in lines["tflite"][1]
    assert "top-1 100.0%" in lines["tflite"][1]
