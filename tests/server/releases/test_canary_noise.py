"""An equal candidate is never rolled back on noise, over real HTTP.

Each run: a real ``fedge serve``, a candidate as good as the live release,
and 40 devices (enrolled before the push, so they count) that report what
evaluating two equally good models on their own 5 to 50 held-out examples
gives: the same accuracy in expectation, different on each device by
chance (the two models agree on most examples, as two versions of one
model do). Five seeds; the rule may promote or keep collecting, never roll
back (its wrong-rollback rate is at most beta = 5 %, and these runs are
fixed seeds that were not picked).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers.live_server import running
from tests.helpers.release_bundles import BundlePair
from tests.server.releases.test_canary import Api, bundles  # noqa: F401

DEVICES = 40


def equal_report(rng: np.random.Generator) -> dict[str, Any]:
    n = int(rng.integers(5, 51))
    p = float(np.clip(rng.normal(0.8, 0.08), 0.05, 0.95))
    u = rng.random(n)
    v = np.where(rng.random(n) < 0.8, u, rng.random(n))  # mostly the same examples right
    live, candidate = float(np.mean(u < p)), float(np.mean(v < p))
    return {
        "baseline_version": 1,
        "metric": "accuracy",
        "candidate": {"loss": 0.5, "accuracy": candidate},
        "baseline": {"loss": 0.5, "accuracy": live},
        "num_examples": n,
        "latency_ms": 0.5,
        "using": "candidate",
    }


@pytest.mark.parametrize("seed", range(5))
def test_an_equal_candidate_is_not_rolled_back_on_noise(
    seed: int,
    bundles: BundlePair,  # noqa: F811
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(seed)
    environ = {**os.environ, "FEDGE_CANARY_REQUIRE_HISTORY": "false"}
    args = ["--model", str(bundles.first.path)]
    with running(tmp_path / "data", args, tmp_path / "log", environ=environ) as server:
        api = Api(server, tmp_path / "data")
        devices = [api.enrol() for _ in range(DEVICES)]
        api.push_candidate(bundles.second, rollout=100)
        decided = []
        for token in devices:  # until the test decides (later reports: not_candidate)
            reply = api.report(token, 2, equal_report(rng))
            assert reply.status_code == 201, reply.text
            decided.append(reply.json()["decided"])
            if decided[-1] is not None:
                break
        summary = api.release(2)["canary"]
        states = api.states()

    assert "rollback" not in decided
    assert api_state_is_not_rolled_back(summary)
    assert states[2] in ("canary", "live")
    assert summary["devices"] == len(decided) <= DEVICES
    lower, upper = summary["interval"]
    assert lower <= 0 <= upper or summary["decision"] == "promote"


def api_state_is_not_rolled_back(summary: dict[str, Any]) -> bool:
    return summary["decision"] in (None, "promote") and summary["outcome"] != "rollback"
