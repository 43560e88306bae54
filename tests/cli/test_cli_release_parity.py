"""Parity per runtime in ``fedge releases`` and ``fedge release VERSION``
(issue 23), and the parity thresholds as settings, against a real
``fedge serve`` whose canary devices report parity over HTTP.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from fedge.cli.main import main
from tests.helpers.live_server import running
from tests.helpers.release_bundles import BundlePair
from tests.server.releases.test_canary import Api, bundles
from tests.server.releases.test_canary_parity import BROKEN, GOOD, SETTINGS, api, better

__all__ = ["api", "bundles"]  # the fixtures: a live server, the bundles built once


def fedge(*args: str) -> Result:
    # Wide enough that rich never wraps a cell of the table.
    return CliRunner().invoke(main, list(args), env={"COLUMNS": "400"})


def reported(api: Api, bundles: BundlePair) -> None:
    """Two browsers on wasm report broken parity, one TFLite device good
    parity: 3 reports, too few for the test to decide."""
    devices = [api.enrol() for _ in range(3)]
    api.push_candidate(bundles.second, rollout=100)
    bodies = [better("tfjs-wasm", BROKEN), better("tfjs-wasm", BROKEN), better("tflite", GOOD)]
    for device, body in zip(devices, bodies, strict=True):
        assert api.report(device, 2, body).status_code == 201


def test_releases_and_release_show_parity_per_runtime(api: Api, bundles: BundlePair) -> None:
    reported(api, bundles)

    table = fedge("releases", "--server", api.url)
    shown = fedge("release", "2", "--server", api.url)
    first = fedge("release", "1", "--server", api.url)

    assert table.exit_code == 0, table.output
    (row,) = [line for line in table.stdout.splitlines() if line.startswith("│ 2 ")]
    assert "tfjs-wasm FAIL 0.40 / tflite ok 1.00" in row
    assert "not enough evidence yet" in row  # the canary column beside it
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    block = lines[lines.index("parity (medians over each runtime's counted devices):") + 1 :]
    assert block == [
        "  tfjs-wasm: FAIL: kept off this runtime's devices; 2 of 2 devices failing, "
        "max abs error 0.61, top-1 agreement 0.400",
        "  tflite: ok; 0 of 1 devices failing, max abs error 2e-06, top-1 agreement 1.000",
    ]
    assert first.exit_code == 0, first.output
    assert first.stdout.splitlines()[-1] == "parity: no device reported parity on its runtime"


@pytest.fixture
def loose(bundles: BundlePair, tmp_path: Path) -> Iterator[Api]:
    """A server whose parity rule tolerates the broken runtime's numbers."""
    environ = {
        **os.environ,
        **SETTINGS,
        "FEDGE_CANARY_PARITY_MAX_ERROR": "0.7",
        "FEDGE_CANARY_PARITY_MIN_AGREEMENT": "0.3",
    }
    data_dir = tmp_path / "data"
    with running(
        data_dir, ["--model", str(bundles.first.path)], tmp_path / "log", environ=environ
    ) as server:
        yield Api(server, data_dir)


def test_the_thresholds_are_the_server_s_settings(loose: Api, bundles: BundlePair) -> None:
    reported(loose, bundles)

    parity = loose.release(2)["parity"]
    shown = fedge("releases", "--server", loose.url)

    assert parity["tfjs-wasm"]["ok"] is True and parity["tfjs-wasm"]["failing"] == 0
    assert "tfjs-wasm ok 0.40 / tflite ok 1.00" in shown.stdout


def test_a_bad_threshold_stops_the_server_at_start(tmp_path: Path) -> None:
    environ = {**os.environ, "FEDGE_CANARY_PARITY_MIN_AGREEMENT": "1.5"}
    started = CliRunner().invoke(main, ["serve", "--data-dir", str(tmp_path / "data")], env=environ)
    assert started.exit_code != 0
    assert "canary_parity_min_agreement must be in [0, 1]" in started.output
