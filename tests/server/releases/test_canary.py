"""Canary releases decided by the devices: evaluations in, promote or roll back.

Real ``fedge serve`` processes over real HTTP, real bundles (see
:mod:`tests.helpers.release_bundles`). Devices in the candidate's slice
report the candidate's and the live release's loss and headline metric on
their own held-out data; after each report the server runs the sequential
test on the counted devices' paired differences (at least
``canary_min_reports``, 3 here) and promotes the candidate, rolls it back
or keeps collecting, in the transaction of the report that decides. The
numbers are chosen so that each device's difference is the same.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from fedge.server.releases.rollout import in_canary
from tests.helpers.live_server import running
from tests.helpers.release_api import ADMIN, ReleaseApi
from tests.helpers.release_bundles import Built, BundlePair, build_pair, bundle_tar
from tests.helpers.stores import Stores

# Devices enrolled before the push count without an earlier update or report
# (the history rule has its own test, tests/server/releases/test_canary_history.py).
SETTINGS = {"FEDGE_CANARY_MIN_REPORTS": "3", "FEDGE_CANARY_REQUIRE_HISTORY": "false"}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> BundlePair:
    return build_pair(tmp_path_factory.mktemp("canary-bundles"))


@dataclass
class Api(ReleaseApi):
    def push_candidate(self, bundle: Built, rollout: float) -> None:
        reply = self.push(bundle_tar(bundle.path), rollout=rollout)
        assert reply.status_code == 201, reply.text

    def enrol(self) -> str:
        reply = requests.post(f"{self.url}/v1/devices", json={"platform": "t"}, timeout=30)
        assert reply.status_code == 201, reply.text
        token: str = reply.json()["token"]
        return token

    def report(self, token: str, version: int, body: Any) -> requests.Response:
        return requests.post(
            f"{self.url}/v1/releases/{version}/evaluations",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )

    def release(self, version: int) -> dict[str, Any]:
        reply = requests.get(f"{self.url}/v1/releases/{version}", timeout=30)
        assert reply.status_code == 200, reply.text
        shown: dict[str, Any] = reply.json()
        return shown

    def evaluations(self, version: int) -> dict[str, Any]:
        reply = requests.get(
            f"{self.url}/v1/releases/{version}/evaluations", headers=ADMIN, timeout=30
        )
        assert reply.status_code == 200, reply.text
        listing: dict[str, Any] = reply.json()
        return listing

    def states(self) -> dict[int, str]:
        return {r["version"]: r["state"] for r in self.releases()["releases"]}

    def state(self) -> tuple[Any, ...]:
        """What a refused report must leave as it was."""
        return self.states(), self.changes(), self.evaluations(2), self.release_events()

    def release_events(self) -> list[dict[str, Any]]:
        return [payload for _, payload in self.stored_events(("release",))]


@pytest.fixture
def api(bundles: BundlePair, stores: Stores, tmp_path: Path) -> Iterator[Api]:
    """Release 1 (the first bundle) live; at least 3 counted devices decide.
    On each store."""
    environ = {**os.environ, **SETTINGS}
    data_dir = tmp_path / "data"
    args = ["--model", str(bundles.first.path), *stores.serve_args(data_dir)]
    with running(data_dir, args, tmp_path / "log", environ=environ) as server:
        yield Api(server, data_dir, stores)


def evaluation(
    candidate: float,
    baseline: float,
    num_examples: int,
    using: str = "candidate",
    losses: tuple[float, float] = (0.5, 0.5),
) -> dict[str, Any]:
    return {
        "baseline_version": 1,
        "metric": "accuracy",
        "candidate": {"loss": losses[0], "accuracy": candidate},
        "baseline": {"loss": losses[1], "accuracy": baseline},
        "num_examples": num_examples,
        "latency_ms": 0.25,
        "using": using,
    }


# --- the decision ------------------------------------------------------------
# The sequential test with the defaults (margin 0.05, bound 0.25, alpha and
# beta 0.05): 8 devices that each see the candidate 0.2 worse give the
# rollback test an e-value of 31.9 >= 1/beta = 20 (seven give 19.46);
# devices that each see it 0.1 better promote at the 8th (e-value 26.7).


def test_a_canary_worse_on_the_devices_is_rolled_back(api: Api, bundles: BundlePair) -> None:
    devices = [api.enrol() for _ in range(8)]  # before the push: they count
    api.push_candidate(bundles.second, rollout=100)
    worse = [
        evaluation(0.70, 0.90, 10 + i, using=("baseline", "personal")[i % 2], losses=(0.9, 0.3))
        for i in range(8)
    ]

    first_seven = [api.report(t, 2, body) for t, body in zip(devices[:7], worse, strict=False)]
    pending = (api.states(), api.release(2)["canary"])
    deciding = api.report(devices[7], 2, worse[7])

    assert [r.status_code for r in first_seven] == [201] * 7, first_seven[0].text
    assert [r.json()["decided"] for r in first_seven] == [None] * 7
    assert pending[0] == {1: "live", 2: "canary"}
    assert pending[1]["outcome"] == "keep collecting"
    assert pending[1]["statistic"]["rollback"] == pytest.approx(19.46, abs=0.01)
    assert deciding.status_code == 201, deciding.text
    assert deciding.json()["decided"] == "rollback"
    assert api.states() == {1: "live", 2: "rolled_back"}
    summary = api.release(2)["canary"]
    assert (summary["decision"], summary["outcome"]) == ("rollback", "rollback")
    # Every device weighs the same: examples are evidence, not weights.
    assert (summary["reports"], summary["devices"]) == (8, 8)
    assert summary["num_examples"] == sum(range(10, 18))
    assert summary["candidate"]["accuracy"] == pytest.approx(0.70)
    assert summary["baseline"]["accuracy"] == pytest.approx(0.90)
    assert summary["candidate"]["loss"] == pytest.approx(0.9)
    assert summary["estimate"] == pytest.approx(-0.2)
    lower, upper = summary["interval"]
    assert -0.25 <= lower < -0.2 < upper < 0
    assert summary["statistic"]["rollback"] == pytest.approx(31.9, abs=0.1)
    assert summary["threshold"] == {"promote": 20.0, "rollback": 20.0}
    assert (summary["alpha"], summary["beta"], summary["bound"]) == (0.05, 0.05, 0.25)
    assert summary["using"] == {"candidate": 0, "baseline": 4, "personal": 4}
    assert "worse than live" in summary["reason"]
    change = api.changes()[0]
    assert (change["action"], change["actor"], change["version"]) == ("rollback", "canary", 1)
    assert change["details"]["dropped"] == [2]
    numbers = change["details"]["canary"]
    assert numbers["version"] == 2
    assert numbers["estimate"] == pytest.approx(-0.2)
    assert numbers["interval"] == summary["interval"]
    assert (numbers["devices"], numbers["num_examples"], numbers["margin"]) == (8, 108, 0.05)
    assert numbers["reason"] == summary["reason"]
    assert "8 devices" in change["why"] and "108 examples" in change["why"]
    assert "-0.2" in change["why"]
    assert api.release_events()[-1] == {
        "version": 2,
        "bundle_id": bundles.second.bundle_id,
        "state": "rolled_back",
        "percent": 0,
    }


def test_a_canary_as_good_is_promoted_once_the_evidence_says_so(
    api: Api, bundles: BundlePair
) -> None:
    devices = [api.enrol() for _ in range(8)]
    api.push_candidate(bundles.second, rollout=100)
    # Each device sees the candidate 0.1 better (the order alternates examples).
    reports = [evaluation(0.9, 0.8, 5 + 10 * (i % 3), using="personal") for i in range(8)]

    replies = [api.report(token, 2, body) for token, body in zip(devices, reports, strict=True)]

    assert [r.status_code for r in replies] == [201] * 8, replies[-1].text
    assert [r.json()["decided"] for r in replies] == [None] * 7 + ["promote"]
    assert api.states() == {1: "retired", 2: "live"}
    summary = api.release(2)["canary"]
    assert (summary["decision"], summary["devices"]) == ("promote", 8)
    assert summary["estimate"] == pytest.approx(0.1)
    assert summary["interval"][0] > -0.05  # not worse by the margin
    assert summary["statistic"]["promote"] >= 20
    change = api.changes()[0]
    assert (change["action"], change["actor"], change["version"]) == ("promote", "canary", 2)
    assert change["details"]["from"] == 1
    assert change["details"]["canary"]["estimate"] == pytest.approx(0.1)
    assert change["details"]["canary"]["margin"] == 0.05
    assert api.release_events()[-1]["state"] == "live"
    listing = api.evaluations(2)
    assert [e["num_examples"] for e in listing["evaluations"]] == [5, 15, 25] * 2 + [5, 15]
    assert all(e["counted"] for e in listing["evaluations"])
    assert listing["canary"] == summary
    assert all(set(e) >= {"device_id", "received_at", "using"} for e in listing["evaluations"])


def test_a_device_enrolled_after_the_push_is_kept_but_not_counted(
    api: Api, bundles: BundlePair
) -> None:
    early = [api.enrol() for _ in range(3)]
    api.push_candidate(bundles.second, rollout=100)
    late = [api.enrol() for _ in range(12)]

    # 12 fresh devices claiming a far better candidate with huge example
    # counts: stored, listed, and not counted (a fresh identity is free).
    for token in late:
        assert api.report(token, 2, evaluation(1.0, 0.0, 10_000_000)).status_code == 201
    for token in early:
        assert api.report(token, 2, evaluation(0.5, 0.5, 10)).status_code == 201

    summary = api.release(2)["canary"]
    assert api.states() == {1: "live", 2: "canary"}
    assert (summary["reports"], summary["devices"], summary["num_examples"]) == (15, 3, 30)
    assert summary["estimate"] == 0
    listing = api.evaluations(2)["evaluations"]
    assert [e["counted"] for e in listing] == [False] * 12 + [True] * 3


def test_a_lower_is_better_metric_is_decided_the_other_way(
    bundles: BundlePair, tmp_path: Path
) -> None:
    environ = {**os.environ, **SETTINGS, "FEDGE_CANARY_MIN_REPORTS": "1"}
    args = ["--model", str(bundles.first.path)]
    with running(tmp_path / "data", args, tmp_path / "log", environ=environ) as server:
        api = Api(server, tmp_path / "data")
        devices = [api.enrol() for _ in range(8)]
        api.push_candidate(bundles.second, rollout=100)
        body = {
            "baseline_version": 1,
            "metric": "mae",
            "candidate": {"loss": 0.2, "mae": 0.45},
            "baseline": {"loss": 0.2, "mae": 0.25},
            "num_examples": 5,
            "latency_ms": 1.0,
            "using": "baseline",
        }

        replies = [api.report(token, 2, body) for token in devices]

        # mae 0.45 against 0.25: the candidate is 0.2 worse, as above.
        assert [r.json()["decided"] for r in replies] == [None] * 7 + ["rollback"]
        summary = api.release(2)["canary"]
        assert summary["higher_is_better"] is False
        assert summary["estimate"] == pytest.approx(-0.2)


# --- refusals ----------------------------------------------------------------


def test_a_repeated_report_gets_the_same_receipt_and_a_different_one_is_refused(
    api: Api, bundles: BundlePair
) -> None:
    api.push_candidate(bundles.second, rollout=100)
    token = api.enrol()

    first = api.report(token, 2, evaluation(0.9, 0.8, 10))
    again = api.report(token, 2, evaluation(0.9, 0.8, 10))
    other = api.report(token, 2, evaluation(0.5, 0.8, 10))

    assert first.status_code == 201, first.text
    assert (again.status_code, again.json()) == (200, first.json())
    assert (other.status_code, other.json()["code"]) == (409, "already_reported")
    assert api.release(2)["canary"]["reports"] == 1


def bad_reports() -> list[tuple[str, Any]]:
    good = evaluation(0.9, 0.8, 10)
    return [
        ("no examples", {**good, "num_examples": 0}),
        ("too many examples", {**good, "num_examples": 10**12}),
        ("examples not an integer", {**good, "num_examples": 2.5}),
        ("accuracy over 1", {**good, "candidate": {"loss": 0.5, "accuracy": 1.5}}),
        ("negative loss", {**good, "baseline": {"loss": -1.0, "accuracy": 0.8}}),
        ("huge loss", {**good, "baseline": {"loss": 1e300, "accuracy": 0.8}}),
        ("metric missing", {**good, "candidate": {"loss": 0.5}}),
        ("an extra score", {**good, "candidate": {"loss": 0.5, "accuracy": 0.9, "x": 1}}),
        ("unknown metric", {**good, "metric": "f1"}),
        ("metric not a name", {**good, "metric": {}}),
        ("unknown model in use", {**good, "using": "mine"}),
        ("negative latency", {**good, "latency_ms": -1}),
        ("baseline not an integer", {**good, "baseline_version": "1"}),
        ("a field missing", {k: v for k, v in good.items() if k != "using"}),
        ("an unknown field", {**good, "data": [1, 2, 3]}),
    ]


def test_a_bad_report_is_refused_and_changes_nothing(api: Api, bundles: BundlePair) -> None:
    api.push_candidate(bundles.second, rollout=100)
    token = api.enrol()
    before = api.state()

    for why, body in bad_reports():
        reply = api.report(token, 2, body)

        assert reply.status_code == 400, (why, reply.text)
        assert reply.json()["code"] == "bad_evaluation", why
    nan = requests.post(
        f"{api.url}/v1/releases/2/evaluations",
        data=json.dumps(evaluation(0.9, 0.8, 10)).replace("0.9", "NaN"),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=30,
    )
    listed = api.report(token, 2, [evaluation(0.9, 0.8, 10)])
    assert (nan.status_code, nan.json()["code"]) == (400, "bad_json")
    assert (listed.status_code, listed.json()["code"]) == (400, "bad_json")
    assert api.state() == before
    assert api.report(token, 2, evaluation(0.9, 0.8, 10)).status_code == 201


def test_a_device_outside_the_slice_cannot_report(api: Api, bundles: BundlePair) -> None:
    api.push_candidate(bundles.second, rollout=30)
    tokens = [api.enrol() for _ in range(12)]
    channels = [
        requests.get(
            f"{api.url}/v1/releases/current",
            headers={"Authorization": f"Bearer {t}"},
            timeout=30,
        ).json()["channel"]
        for t in tokens
    ]
    outside = [t for t, channel in zip(tokens, channels, strict=True) if channel == "live"]
    assert outside  # 12 devices at 30 %: P(all inside) is 0.3 ** 12
    before = api.state()

    reply = api.report(outside[0], 2, evaluation(0.9, 0.8, 10))

    assert (reply.status_code, reply.json()["code"]) == (409, "not_in_canary")
    assert api.state() == before


def test_only_the_candidate_takes_reports_against_the_live_release(
    api: Api, bundles: BundlePair
) -> None:
    token = api.enrol()
    no_candidate = api.report(token, 1, evaluation(0.9, 0.8, 10))
    unknown = api.report(token, 9, evaluation(0.9, 0.8, 10))
    api.push_candidate(bundles.second, rollout=100)
    live = api.report(token, 1, evaluation(0.9, 0.8, 10))
    stale = api.report(token, 2, {**evaluation(0.9, 0.8, 10), "baseline_version": 2})
    anonymous = requests.post(
        f"{api.url}/v1/releases/2/evaluations", json=evaluation(0.9, 0.8, 10), timeout=30
    )
    listing_as_device = requests.get(
        f"{api.url}/v1/releases/2/evaluations",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )

    assert (no_candidate.status_code, no_candidate.json()["code"]) == (409, "not_candidate")
    assert (unknown.status_code, unknown.json()["code"]) == (404, "unknown_release")
    assert (live.status_code, live.json()["code"]) == (409, "not_candidate")
    assert (stale.status_code, stale.json()["code"]) == (409, "stale_baseline")
    assert anonymous.status_code == 401
    assert listing_as_device.status_code == 403
    assert api.release(2)["canary"]["reports"] == 0
    assert api.release(1)["canary"] is None


def test_the_slice_check_is_the_documented_keyed_hash(api: Api, bundles: BundlePair) -> None:
    api.push_candidate(bundles.second, rollout=50)
    reply = requests.post(f"{api.url}/v1/devices", json={"platform": "t"}, timeout=30).json()

    answer = api.report(reply["token"], 2, evaluation(0.9, 0.8, 10))

    inside = in_canary(api.slice_key(), bundles.second.bundle_id, reply["device_id"], 50)
    assert answer.status_code == (201 if inside else 409), answer.text
