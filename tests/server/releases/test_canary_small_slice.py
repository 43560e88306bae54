"""A canary whose slice holds fewer devices than ``canary_min_reports``.

50 % of 6 devices can never send the default 5 reports: the candidate used
to stay pending forever. The server decides it once every device of its
slice has reported, and the change log says that the whole slice decided
it, with how many devices it held. Real ``fedge serve`` over HTTP."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from fedge.server.releases.rollout import bucket
from tests.helpers.live_server import running
from tests.helpers.release_bundles import build
from tests.server.releases.test_canary import Api, Bundles, evaluation

DEFAULT_MIN_REPORTS = 5


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Bundles:
    root = tmp_path_factory.mktemp("small-slice-bundles")
    return Bundles(first=build(root, "first", 0.0), second=build(root, "second", 1.0))


@pytest.fixture
def api(bundles: Bundles, tmp_path: Path) -> Iterator[Api]:
    """Release 1 live, the server's default canary_min_reports (5)."""
    environ = {k: v for k, v in os.environ.items() if k != "FEDGE_CANARY_MIN_REPORTS"}
    data_dir = tmp_path / "data"
    args = ["--model", str(bundles.first.path)]
    with running(data_dir, args, tmp_path / "log", environ=environ) as server:
        yield Api(server, data_dir)


def test_a_slice_smaller_than_the_minimum_is_decided_by_all_of_it(
    api: Api, bundles: Bundles
) -> None:
    devices = []
    for _ in range(6):
        reply = requests.post(f"{api.url}/v1/devices", json={"platform": "t"}, timeout=30)
        assert reply.status_code == 201, reply.text
        devices.append((reply.json()["device_id"], reply.json()["token"]))
    # A rollout percent that puts exactly 3 of the 6 devices in the slice
    # (about what 50 % gives): fewer than the 5 reports the server asks for.
    ranked = sorted(devices, key=lambda d: bucket(bundles.second.bundle_id, d[0]))
    low, high = (bucket(bundles.second.bundle_id, ranked[i][0]) for i in (2, 3))
    assert low < high
    api.push_candidate(bundles.second, rollout=round((low + high) / 2, 2))
    inside = [token for _, token in ranked[:3]]

    first_two = [api.report(token, 2, evaluation(0.9, 0.8, 10)) for token in inside[:2]]
    pending = api.states()
    last = api.report(inside[2], 2, evaluation(0.9, 0.8, 10))

    assert [r.json()["decided"] for r in first_two] == [None, None], first_two[0].text
    assert pending == {1: "live", 2: "canary"}
    assert last.status_code == 201, last.text
    assert last.json()["decided"] == "promote"
    assert api.states() == {1: "retired", 2: "live"}
    change = api.changes()[0]
    assert (change["action"], change["actor"]) == ("promote", "canary")
    assert "all 3 devices of its slice" in change["why"]
    assert f"canary_min_reports {DEFAULT_MIN_REPORTS}" in change["why"]
    assert change["details"]["canary"]["slice_devices"] == 3
