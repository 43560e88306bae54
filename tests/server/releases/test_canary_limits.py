"""A canary that never gathers enough evidence ends at its time limit with
the configured default, recorded as such, even without any report (the
round driver settles it). Real ``fedge serve`` over HTTP."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.helpers.live_server import running
from tests.helpers.release_bundles import BundlePair
from tests.server.releases.test_canary import Api, bundles  # noqa: F401


def test_a_canary_without_evidence_ends_at_its_time_limit_with_the_default(
    bundles: BundlePair,  # noqa: F811
    tmp_path: Path,
) -> None:
    environ = {**os.environ, "FEDGE_CANARY_MAX_S": "2"}
    args = ["--model", str(bundles.first.path)]
    with running(tmp_path / "data", args, tmp_path / "log", environ=environ) as server:
        api = Api(server, tmp_path / "data")
        api.push_candidate(bundles.second, rollout=100)
        deadline = time.monotonic() + 30
        while api.states()[2] == "canary" and time.monotonic() < deadline:
            time.sleep(0.5)
        states = api.states()
        summary = api.release(2)["canary"]
        change = api.changes()[0]

    assert states == {1: "live", 2: "rolled_back"}
    assert (summary["decision"], summary["devices"]) == ("rollback", 0)
    assert summary["reason"].startswith("limit: ")
    assert "canary_max_s" in summary["reason"] and "default (rollback)" in summary["reason"]
    assert (change["action"], change["actor"], change["version"]) == ("rollback", "canary", 1)
    assert change["details"]["canary"]["reason"] == summary["reason"]
    assert "limit: " in change["why"]
