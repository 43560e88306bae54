"""Which devices count in a canary decision, with the server's defaults:
those enrolled before the candidate that have a history (an accepted
update, or a report on an earlier release). Real ``fedge serve`` over HTTP.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.helpers.live_server import running
from tests.helpers.release_api import ADMIN
from tests.helpers.release_bundles import build, bundle_tar
from tests.server.releases.test_canary import Api, evaluation


def test_only_devices_with_a_history_from_before_the_push_count(tmp_path: Path) -> None:
    first, second, third = (
        build(tmp_path, name, w) for name, w in (("a", 0.0), ("b", 1.0), ("c", 2.0))
    )
    with running(tmp_path / "data", ["--model", str(first.path)], tmp_path / "log") as server:
        api = Api(server, tmp_path / "data")
        veterans = [api.enrol() for _ in range(4)]
        api.push_candidate(second, rollout=100)
        for token in veterans:  # their first reports: no history yet
            assert api.report(token, 2, evaluation(0.9, 0.8, 10)).status_code == 201
        on_second = api.release(2)["canary"]
        dropped = requests.post(
            f"{api.url}/v1/admin/rollback", json={"why": "test"}, headers=ADMIN, timeout=30
        )
        assert dropped.status_code == 200, dropped.text
        newcomer = api.enrol()  # enrolled before release 3, but no history
        assert api.push(bundle_tar(third.path), rollout=100).status_code == 201
        for token in [*veterans, newcomer]:
            body = {**evaluation(0.9, 0.8, 10), "baseline_version": 1}
            assert api.report(token, 3, body).status_code == 201
        on_third = api.release(3)["canary"]
        listing = api.evaluations(3)["evaluations"]

    assert (on_second["reports"], on_second["devices"]) == (4, 0)
    assert on_second["outcome"] == "keep collecting"
    assert (on_third["reports"], on_third["devices"]) == (5, 4)
    assert [e["counted"] for e in listing] == [True] * 4 + [False]
    assert on_third["estimate"] == pytest.approx(0.1)
