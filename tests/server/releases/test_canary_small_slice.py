"""A canary whose slice holds too few counted devices to decide.

50 % of 6 devices can never give the default floor of 5 counted devices:
the candidate used to be decided by the whole small slice. Now the slice
widens instead (doubling, up to ``canary_max_percent``) once every counted
device in it has reported, and the change log says why. Real ``fedge
serve`` over HTTP."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from fedge.server.releases.rollout import bucket
from tests.helpers.live_server import running
from tests.helpers.release_bundles import BundlePair, build_pair
from tests.server.releases.test_canary import Api, evaluation


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> BundlePair:
    return build_pair(tmp_path_factory.mktemp("small-slice-bundles"))


@pytest.fixture
def api(bundles: BundlePair, tmp_path: Path) -> Iterator[Api]:
    """Release 1 live, the default floor (5); devices enrolled before the push count."""
    environ = {
        **{k: v for k, v in os.environ.items() if k != "FEDGE_CANARY_MIN_REPORTS"},
        "FEDGE_CANARY_REQUIRE_HISTORY": "false",
        # The slice's key is random per server, so the percent that puts 3
        # of 6 devices in it may be anything: let widening reach 100 %.
        "FEDGE_CANARY_MAX_PERCENT": "100",
    }
    data_dir = tmp_path / "data"
    args = ["--model", str(bundles.first.path)]
    with running(data_dir, args, tmp_path / "log", environ=environ) as server:
        yield Api(server, data_dir)


def test_a_slice_too_small_to_decide_widens_once_it_has_reported(
    api: Api, bundles: BundlePair
) -> None:
    devices = []
    for _ in range(6):
        reply = requests.post(f"{api.url}/v1/devices", json={"platform": "t"}, timeout=30)
        assert reply.status_code == 201, reply.text
        devices.append((reply.json()["device_id"], reply.json()["token"]))
    key = api.slice_key()
    # A rollout percent that puts exactly 3 of the 6 devices in the slice.
    ranked = sorted(devices, key=lambda d: bucket(key, bundles.second.bundle_id, d[0]))
    low, high = (bucket(key, bundles.second.bundle_id, ranked[i][0]) for i in (2, 3))
    assert low < high
    percent = round((low + high) / 2, 2)
    api.push_candidate(bundles.second, rollout=percent)
    inside = [token for _, token in ranked[:3]]

    first_two = [api.report(token, 2, evaluation(0.9, 0.8, 10)) for token in inside[:2]]
    still = api.releases()["rollout"]["percent"]
    last = api.report(inside[2], 2, evaluation(0.9, 0.8, 10))

    assert [r.status_code for r in first_two] == [201, 201], first_two[0].text
    assert still == percent  # one device of the slice has yet to report
    assert last.status_code == 201, last.text
    assert last.json()["decided"] is None
    widened = min(100.0, max(percent * 2, percent + 1))
    assert api.states() == {1: "live", 2: "canary"}
    assert api.releases()["rollout"]["percent"] == pytest.approx(widened)
    change = api.changes()[0]
    assert (change["action"], change["actor"], change["version"]) == ("rollout", "canary", 2)
    assert change["details"] == {"from": percent, "to": pytest.approx(widened)}
    assert "not enough evidence yet from 3 counted devices" in change["why"]
    summary = api.release(2)["canary"]
    assert (summary["outcome"], summary["devices"]) == ("keep collecting", 3)
    assert "3 of at least 5 devices" in summary["reason"]
