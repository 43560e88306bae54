"""Releases: push, staged rollout, promote, rollback and the change log.

Real ``fedge serve`` processes over real HTTP, with real bundles made by
``fedge convert``'s code from a small Keras model (see
:mod:`tests.helpers.release_bundles`). A refused push changes nothing: the
releases, the change log and the bundles directory are the same after it.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from fedge.bundle.manifest import MANIFEST_FILE, verify_bundle
from fedge.client_sim.device.bundle_download import download_bundle
from fedge.client_sim.device.client import FedgeClient
from fedge.client_sim.device.events import poll_events
from fedge.client_sim.device.releases import current_release
from fedge.client_sim.device.transport import HttpTransport
from fedge.server.releases.rollout import bucket, in_canary
from fedge.server.storage.bundles import BUNDLES_DIR
from tests.helpers.live_server import running
from tests.helpers.release_api import ADMIN, TAR, ReleaseApi
from tests.helpers.release_bundles import MODEL_NAME, Built, build, bundle_tar
from tests.helpers.stores import Stores
from tests.helpers.subscriber import subscribed, take

# --- the slice of devices: a pure function ----------------------------------


KEY = bytes(range(32))


def test_the_rollout_percentage_holds_over_10000_devices() -> None:
    devices = [f"d-{i:016x}" for i in range(10_000)]
    bundle_id = "ab" * 32

    for percent in (1, 10, 25, 50, 90):
        share = sum(in_canary(KEY, bundle_id, d, percent) for d in devices) / len(devices) * 100

        assert abs(share - percent) < 2, (percent, share)


def test_raising_the_percentage_never_removes_a_device() -> None:
    devices = [f"d-{i:016x}" for i in range(2_000)]
    bundle_id = "cd" * 32
    previous: set[str] = set()

    for percent in (0, 5, 10, 33.3, 50, 99.99, 100):
        slice_ = {d for d in devices if in_canary(KEY, bundle_id, d, percent)}

        assert previous <= slice_, percent
        previous = slice_
    assert previous == set(devices)


def test_the_bucket_is_the_documented_keyed_hash() -> None:
    import hashlib
    import hmac

    digest = hmac.new(KEY, b"ab" * 32 + b":d-1", hashlib.sha256).hexdigest()
    public = hashlib.sha256(b"ab" * 32 + b":d-1").hexdigest()

    assert bucket(KEY, "ab" * 32, "d-1") == int(digest[:8], 16) % 10000 / 100
    assert 0 <= bucket(KEY, "ab" * 32, "d-1") < 100
    assert bucket(KEY, "ab" * 32, "d-1") != int(public[:8], 16) % 10000 / 100
    assert bucket(bytes(32), "ab" * 32, "d-1") != bucket(KEY, "ab" * 32, "d-1")


# --- fixtures: bundles and servers -------------------------------------------


@dataclass(frozen=True)
class Bundles:
    first: Built
    second: Built
    third: Built
    parity_failed: Built
    other_model: Built


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Bundles:
    root = tmp_path_factory.mktemp("release-bundles")
    return Bundles(
        first=build(root, "first", 0.0),
        second=build(root, "second", 1.0),
        third=build(root, "third", 2.0),
        parity_failed=build(root, "parity", 3.0, parity_fail=True),
        other_model=build(root, "other", 0.0, units=5),
    )


@dataclass
class Api(ReleaseApi):
    def admin(self, path: str, body: dict[str, Any]) -> requests.Response:
        return requests.post(self.url + path, json=body, headers=ADMIN, timeout=30)

    def enrol(self) -> tuple[str, str]:
        reply = requests.post(f"{self.url}/v1/devices", json={"platform": "t"}, timeout=30)
        assert reply.status_code == 201, reply.text
        return reply.json()["device_id"], reply.json()["token"]

    def current(self, token: str, etag: str | None = None) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"}
        if etag is not None:
            headers["If-None-Match"] = etag
        return requests.get(f"{self.url}/v1/releases/current", headers=headers, timeout=30)

    def state(self) -> tuple[Any, ...]:
        """What a refused push must leave as it was."""
        stored = self.data_dir / BUNDLES_DIR
        files = sorted(str(p.relative_to(stored)) for p in stored.rglob("*"))
        return self.releases(), self.changes(), files

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        return self.stored_events(_RELEASE_EVENTS)


_RELEASE_EVENTS = ("release", "rollout")


@pytest.fixture
def api(bundles: Bundles, stores: Stores, tmp_path: Path) -> Iterator[Api]:
    """A server started from the first bundle (release 1, live), on each store."""
    data_dir = tmp_path / "data"
    args = ["--model", str(bundles.first.path), *stores.serve_args(data_dir)]
    with running(data_dir, args, tmp_path / "log") as server:
        yield Api(server, data_dir, stores)


def device(url: str) -> FedgeClient:
    client = FedgeClient(HttpTransport(url))
    client.enrol(platform="test")
    return client


# --- the first release -------------------------------------------------------


def test_the_bundle_the_server_started_from_is_release_1_and_live(
    api: Api, bundles: Bundles
) -> None:
    listing = api.releases()

    (release,) = listing["releases"]
    assert release["version"] == 1
    assert release["bundle_id"] == bundles.first.bundle_id
    assert (release["state"], release["source"]) == ("live", "initial")
    assert listing["rollout"] == {"live": 1, "candidate": None, "percent": 0}
    assert requests.get(f"{api.url}/v1/releases/1", timeout=30).json() == {
        **release,
        "canary": None,  # no device has reported on it (tests/server/releases/test_canary.py)
        "parity": {},  # nor on its runtime (tests/server/releases/test_canary_parity.py)
    }
    assert requests.get(f"{api.url}/v1/releases/2", timeout=30).status_code == 404


def test_a_keras_server_has_no_release_until_a_push(bundles: Bundles, tmp_path: Path) -> None:
    args = ["--model", str(bundles.first.keras_path)]
    with running(tmp_path / "data", args, tmp_path / "log") as server:
        keras = Api(server, tmp_path / "data")
        _, token = keras.enrol()
        before = keras.current(token)

        pushed = keras.push(bundle_tar(bundles.second.path), notes="first push")
        after = keras.current(token)

    assert (before.status_code, before.json()["code"]) == (404, "no_release")
    assert pushed.status_code == 201, pushed.text
    assert (pushed.json()["version"], pushed.json()["state"]) == (1, "live")
    assert pushed.json()["source"] == "push"
    assert after.json()["bundle_id"] == bundles.second.bundle_id
    assert after.json()["channel"] == "live"


# --- push and delivery -------------------------------------------------------


def test_a_pushed_release_reaches_its_canary_slice_and_the_rest_keep_live(
    api: Api, bundles: Bundles, tmp_path: Path
) -> None:
    devices = [api.enrol() for _ in range(16)]

    pushed = api.push(bundle_tar(bundles.second.path), rollout=50, notes="new weights", by="ana")

    assert pushed.status_code == 201, pushed.text
    release = pushed.json()
    assert pushed.headers["Location"].endswith("/v1/releases/2")
    assert (release["version"], release["state"], release["percent"]) == (2, "canary", 50)
    assert (release["notes"], release["created_by"]) == ("new weights", "ana")
    seen = {}
    for device_id, token in devices:
        reply = api.current(token)
        assert reply.status_code == 200, reply.text
        seen[device_id] = reply.json()
    for device_id, got in seen.items():
        canary = in_canary(api.slice_key(), bundles.second.bundle_id, device_id, 50)
        expected = bundles.second if canary else bundles.first
        assert got["channel"] == ("canary" if canary else "live")
        assert got["bundle_id"] == expected.bundle_id
        assert got["version"] == (2 if canary else 1)
        assert got["name"] == MODEL_NAME
        assert got["files"] == f"/v1/bundles/{expected.bundle_id}/"
    assert {got["channel"] for got in seen.values()} == {"live", "canary"}  # 16 devices


def test_a_device_downloads_the_release_it_is_given(
    api: Api, bundles: Bundles, tmp_path: Path
) -> None:
    assert api.push(bundle_tar(bundles.second.path), rollout=100).status_code == 201
    client = device(api.url)

    release = current_release(client, None)
    assert release is not None
    path = download_bundle(client, release.bundle_id, tmp_path / "device")

    assert release.channel == "canary"
    assert verify_bundle(path, expected_id=bundles.second.bundle_id).name == MODEL_NAME
    assert (path / MANIFEST_FILE).read_bytes() == (bundles.second.path / MANIFEST_FILE).read_bytes()


def test_the_current_release_has_an_etag_and_answers_304(api: Api, bundles: Bundles) -> None:
    client = device(api.url)

    first = current_release(client, None)
    assert first is not None
    unchanged = current_release(client, first.etag)
    raw = api.current(client.token, etag=first.etag)
    api.push(bundle_tar(bundles.second.path), rollout=100)
    changed = current_release(client, first.etag)

    assert first.etag == f'"1-live-{bundles.first.bundle_id}"'
    assert unchanged is None
    assert raw.status_code == 304 and raw.content == b""
    assert changed is not None and changed.bundle_id == bundles.second.bundle_id


def test_a_promoted_candidate_is_not_answered_304_to_its_canary_device(
    api: Api, bundles: Bundles
) -> None:
    """The same bundle, but now live: the device must hear that its channel changed."""
    api.push(bundle_tar(bundles.second.path), rollout=100)
    client = device(api.url)
    as_canary = current_release(client, None)
    assert as_canary is not None and as_canary.channel == "canary"

    api.admin("/v1/admin/releases/2/promote", {"why": "metrics hold"})
    after = current_release(client, as_canary.etag)

    assert after is not None, "304: the device would keep believing it runs a canary"
    assert (after.bundle_id, after.channel) == (bundles.second.bundle_id, "live")


def test_the_current_release_needs_a_device_token(api: Api) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}):
        reply = requests.get(f"{api.url}/v1/releases/current", headers=headers, timeout=30)

        assert (reply.status_code, reply.json()["code"]) == (401, "unauthorized")


# --- refused pushes change nothing -------------------------------------------


def _flip_a_byte(name: str, tar: bytes) -> bytes:
    """The same tar with one byte of member ``name`` changed."""
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(tar)) as original,
        tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as changed,
    ):
        for member in original.getmembers():
            data = original.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == name:
                index = data.index(b"dense") if name == MANIFEST_FILE else len(data) // 2
                data = data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]
            changed.addfile(member, io.BytesIO(data))
    return out.getvalue()


@pytest.mark.parametrize("name", ["tflite/model.tflite", MANIFEST_FILE])
def test_a_tampered_bundle_is_refused_and_nothing_changes(
    api: Api, bundles: Bundles, name: str
) -> None:
    tampered = _flip_a_byte(name, bundle_tar(bundles.second.path))
    before = api.state()

    reply = api.push(tampered)

    assert reply.status_code == 422, reply.text
    assert reply.json()["code"] == "bundle_invalid"
    assert name in reply.json()["message"]
    assert api.state() == before


def test_a_bundle_whose_parity_failed_is_refused_and_nothing_changes(
    api: Api, bundles: Bundles
) -> None:
    before = api.state()

    reply = api.push(bundle_tar(bundles.parity_failed.path))

    assert reply.status_code == 422, reply.text
    assert reply.json()["code"] == "parity_failed"
    assert "tflite" in reply.json()["message"]
    assert api.state() == before


def test_force_with_a_reason_is_accepted_and_recorded(api: Api, bundles: Bundles) -> None:
    started = time.time()

    reply = api.push(
        bundle_tar(bundles.parity_failed.path), force="fp16 error is fine here", by="bo"
    )

    assert reply.status_code == 201, reply.text
    assert reply.json()["forced_reason"] == "fp16 error is fine here"
    actions = [(c["action"], c["version"], c["actor"], c["why"]) for c in api.changes()]
    assert ("force", 2, "bo", "fp16 error is fine here") in actions
    force = next(c for c in api.changes() if c["action"] == "force")
    assert started - 1 <= force["at"] <= time.time() + 1
    assert "tflite" in json.dumps(force["details"])


def test_a_different_model_is_refused_naming_the_mismatch(api: Api, bundles: Bundles) -> None:
    before = api.state()

    reply = api.push(bundle_tar(bundles.other_model.path))

    assert reply.status_code == 409, reply.text
    assert reply.json()["code"] == "wrong_model"
    assert "dense/kernel" in reply.json()["message"]
    assert "(4, 5)" in reply.json()["message"] and "(4, 3)" in reply.json()["message"]
    assert api.state() == before


def test_the_same_bundle_twice_is_already_released(api: Api, bundles: Bundles) -> None:
    before = api.state()

    reply = api.push(bundle_tar(bundles.first.path))

    assert (reply.status_code, reply.json()["code"]) == (409, "already_released")
    assert "release 1" in reply.json()["message"]
    assert api.state() == before


@pytest.mark.parametrize(
    ("members", "code"),
    [
        ([("../escape.txt", b"x")], "bad_bundle"),
        ([("/etc/escape.txt", b"x")], "bad_bundle"),
        ([("link", None)], "bad_bundle"),
        ([], "bad_bundle"),
    ],
)
def test_an_unsafe_archive_is_refused_and_nothing_changes(
    api: Api, members: list[tuple[str, bytes | None]], code: str
) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    before = api.state()

    reply = api.push(buffer.getvalue() if members else b"not a tar at all")

    assert (reply.status_code, reply.json()["code"]) == (400, code), reply.text
    assert api.state() == before


def test_a_push_needs_the_admin_token_and_a_tar(api: Api, bundles: Bundles) -> None:
    tar = bundle_tar(bundles.second.path)
    url = f"{api.url}/v1/releases"

    anonymous = requests.post(url, data=tar, headers={"Content-Type": TAR}, timeout=30)
    as_json = requests.post(url, json={}, headers=ADMIN, timeout=30)
    bad_rollout = api.push(tar, rollout=101)

    assert anonymous.status_code == 401
    assert (as_json.status_code, as_json.json()["code"]) == (415, "unsupported_media_type")
    assert (bad_rollout.status_code, bad_rollout.json()["code"]) == (400, "bad_query")
    assert len(api.releases()["releases"]) == 1


def test_a_release_over_the_size_bound_is_a_413(bundles: Bundles, tmp_path: Path) -> None:
    tar = bundle_tar(bundles.second.path)
    environ = {**os.environ, "FEDGE_MAX_RELEASE_BYTES": str(len(tar) // 2)}
    args = ["--model", str(bundles.first.path)]
    with running(tmp_path / "data", args, tmp_path / "log", environ=environ) as server:
        small = Api(server, tmp_path / "data")
        before = small.state()

        reply = small.push(tar)

        assert (reply.status_code, reply.json()["code"]) == (413, "payload_too_large")
        assert small.state() == before


def test_a_release_larger_than_any_update_is_taken_on_its_route_only(tmp_path: Path) -> None:
    # 1024 x 512 weights: a bundle of several copies of 2 MiB, far over the
    # body bound the HTTP server keeps for updates (one copy and a header).
    first = build(tmp_path, "big-1", 0.0, units=512, features=1024)
    second = build(tmp_path, "big-2", 1.0, units=512, features=1024)
    tar = bundle_tar(second.path)
    with running(tmp_path / "data", ["--model", str(first.path)], tmp_path / "log") as server:
        big = Api(server, tmp_path / "data")
        _, token = big.enrol()

        pushed = big.push(tar)
        update = requests.post(
            f"{server.url}/v1/rounds/1/updates",
            data=tar,
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/octet-stream",
            },
            timeout=60,
        )

    assert len(tar) > 6 * 2**20
    assert pushed.status_code == 201, pushed.text
    assert (update.status_code, update.json()["code"]) == (413, "payload_too_large")


# --- rollout, promote, rollback ----------------------------------------------


def test_raising_the_percent_only_adds_devices_over_http(api: Api, bundles: Bundles) -> None:
    devices = [api.enrol() for _ in range(12)]
    api.push(bundle_tar(bundles.second.path), rollout=0)
    slices = []

    for percent in (0, 30, 70, 100):
        reply = api.admin("/v1/admin/rollout", {"percent": percent, "why": "going well"})
        assert reply.status_code == 200, reply.text
        assert reply.json()["rollout"] == {"live": 1, "candidate": 2, "percent": percent}
        slices.append(
            {d for d, token in devices if api.current(token).json()["channel"] == "canary"}
        )

    assert slices[0] == set()
    assert slices[0] <= slices[1] <= slices[2] <= slices[3] == {d for d, _ in devices}
    for percent, slice_ in zip((30, 70), slices[1:3], strict=True):
        expected = {
            d
            for d, _ in devices
            if in_canary(api.slice_key(), bundles.second.bundle_id, d, percent)
        }
        assert slice_ == expected
    rollouts = [payload["percent"] for kind, payload in api.events() if kind == "rollout"]
    assert rollouts == [0, 30, 70, 100]


def test_rollout_without_a_candidate_is_a_404(api: Api) -> None:
    reply = api.admin("/v1/admin/rollout", {"percent": 50, "why": "x"})

    assert (reply.status_code, reply.json()["code"]) == (404, "no_candidate")


def test_promote_makes_the_candidate_live_for_everyone(api: Api, bundles: Bundles) -> None:
    api.push(bundle_tar(bundles.second.path), rollout=10)
    devices = [api.enrol() for _ in range(6)]

    reply = api.admin("/v1/admin/releases/2/promote", {"why": "metrics hold", "by": "cy"})

    assert reply.status_code == 200, reply.text
    assert reply.json()["rollout"] == {"live": 2, "candidate": None, "percent": 0}
    states = {r["version"]: r["state"] for r in api.releases()["releases"]}
    assert states == {1: "retired", 2: "live"}
    for _, token in devices:
        got = api.current(token).json()
        assert (got["version"], got["channel"]) == (2, "live")
    promote = api.changes()[0]
    assert (promote["action"], promote["version"], promote["actor"]) == ("promote", 2, "cy")
    assert promote["why"] == "metrics hold"
    assert ("release", {"version": 2, "bundle_id": bundles.second.bundle_id,
                        "state": "live", "percent": 100}) in api.events()  # fmt: skip


def test_promote_of_a_release_that_is_not_the_candidate_is_refused(api: Api) -> None:
    assert api.admin("/v1/admin/releases/1/promote", {}).json()["code"] == "not_candidate"
    assert api.admin("/v1/admin/releases/7/promote", {}).json()["code"] == "unknown_release"


def test_rollback_to_an_earlier_release_in_one_call(api: Api, bundles: Bundles) -> None:
    api.push(bundle_tar(bundles.second.path), rollout=100)
    api.admin("/v1/admin/releases/2/promote", {"why": "ok"})
    api.push(bundle_tar(bundles.third.path), rollout=20)
    started = time.time()

    reply = api.admin("/v1/admin/rollback", {"version": 1, "why": "accuracy dropped", "by": "dee"})

    assert reply.status_code == 200, reply.text
    assert reply.json()["rollout"] == {"live": 1, "candidate": None, "percent": 0}
    states = {r["version"]: r["state"] for r in api.releases()["releases"]}
    assert states == {1: "live", 2: "rolled_back", 3: "rolled_back"}
    change = api.changes()[0]
    assert change == reply.json()["change"]
    assert (change["action"], change["version"], change["actor"]) == ("rollback", 1, "dee")
    assert change["why"] == "accuracy dropped"
    assert started - 1 <= change["at"] <= time.time() + 1
    assert change["details"] == {"from": 2, "dropped": [3, 2]}
    _, token = api.enrol()
    assert api.current(token).json()["bundle_id"] == bundles.first.bundle_id
    released = [(p["version"], p["state"]) for kind, p in api.events() if kind == "release"]
    assert released[-3:] == [(3, "rolled_back"), (2, "rolled_back"), (1, "live")]


def test_rollback_undoes_the_latest_change_by_default(api: Api, bundles: Bundles) -> None:
    api.push(bundle_tar(bundles.second.path), rollout=100)
    api.admin("/v1/admin/releases/2/promote", {"why": "ok"})
    api.push(bundle_tar(bundles.third.path), rollout=20)

    dropped = api.admin("/v1/admin/rollback", {"why": "the canary's loss went up"})
    states_after_drop = {r["version"]: r["state"] for r in api.releases()["releases"]}
    previous = api.admin("/v1/admin/rollback", {"why": "release 2 too"})
    states_after_previous = {r["version"]: r["state"] for r in api.releases()["releases"]}

    assert dropped.json()["rollout"] == {"live": 2, "candidate": None, "percent": 0}
    assert states_after_drop == {1: "retired", 2: "live", 3: "rolled_back"}
    assert dropped.json()["change"]["details"] == {"from": 2, "dropped": [3]}
    assert previous.json()["rollout"]["live"] == 1
    assert states_after_previous == {1: "live", 2: "rolled_back", 3: "rolled_back"}


def test_rollback_to_a_named_version_and_its_refusals(api: Api, bundles: Bundles) -> None:
    no_why = api.admin("/v1/admin/rollback", {"version": 1})
    nothing_earlier = api.admin("/v1/admin/rollback", {"why": "x"})
    api.push(bundle_tar(bundles.second.path), rollout=100)
    api.admin("/v1/admin/releases/2/promote", {"why": "ok"})
    live = api.admin("/v1/admin/rollback", {"version": 2, "why": "x"})
    unknown = api.admin("/v1/admin/rollback", {"version": 9, "why": "x"})

    reply = api.admin("/v1/admin/rollback", {"version": 1, "why": "back"})

    assert (no_why.status_code, no_why.json()["code"]) == (400, "bad_json")
    assert (nothing_earlier.status_code, nothing_earlier.json()["code"]) == (
        409,
        "nothing_to_roll_back_to",
    )
    assert (live.status_code, live.json()["code"]) == (409, "already_live")
    assert (unknown.status_code, unknown.json()["code"]) == (404, "unknown_release")
    assert reply.json()["rollout"]["live"] == 1
    assert [c["action"] for c in api.changes()] == ["rollback", "promote", "push", "initial"]


def test_admin_routes_need_the_admin_token(api: Api) -> None:
    for path in ("/v1/admin/rollout", "/v1/admin/rollback", "/v1/admin/releases/1/promote"):
        reply = requests.post(api.url + path, json={"why": "x", "percent": 5}, timeout=30)
        assert reply.status_code == 401, path
    reply = requests.get(f"{api.url}/v1/admin/release-changes", timeout=30)
    assert reply.status_code == 401


def test_releases_and_their_files_survive_a_restart(bundles: Bundles, tmp_path: Path) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "log"
    with running(data_dir, ["--model", str(bundles.first.path)], log) as server:
        Api(server, data_dir).push(bundle_tar(bundles.second.path), rollout=100)

    with running(data_dir, [], log) as server:
        again = Api(server, data_dir)
        listing = again.releases()
        client = device(server.url)
        release = current_release(client, None)
        assert release is not None
        path = download_bundle(client, release.bundle_id, tmp_path / "device")

    assert [r["version"] for r in listing["releases"]] == [2, 1]
    assert release.bundle_id == bundles.second.bundle_id
    assert verify_bundle(path, expected_id=bundles.second.bundle_id).name == MODEL_NAME


def test_predict_and_the_model_name_the_live_release_never_the_canary(
    api: Api, bundles: Bundles
) -> None:
    from fedge.bundle.manifest import open_bundle
    from fedge.converters.targets.tflite import load_predictor

    _, token = api.enrol()
    x = [[0.5, -1.0, 2.0, 0.25]]

    def predicted() -> tuple[str, list[list[float]]]:
        reply = requests.post(
            f"{api.url}/v1/models/{MODEL_NAME}/predict",
            json={"inputs": {"x": x}},
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        assert reply.status_code == 200, reply.text
        body = reply.json()
        return body["bundle_id"], next(iter(body["outputs"].values()))

    def local(bundle: Path) -> list[list[float]]:
        manifest = open_bundle(bundle).manifest
        record = manifest.artifact("tflite")
        (out,) = load_predictor(bundle, record).predict([np.asarray(x, np.float32)])
        return np.asarray(out).tolist()  # type: ignore[no-any-return]

    assert predicted()[0] == bundles.first.bundle_id
    api.push(bundle_tar(bundles.second.path), rollout=100)
    assert predicted()[0] == bundles.first.bundle_id  # a canary, even at 100%
    api.admin("/v1/admin/releases/2/promote", {"why": "holds"})

    bundle_id, outputs = predicted()
    model = requests.get(f"{api.url}/v1/models/{MODEL_NAME}", timeout=30).json()

    assert bundle_id == model["bundle_id"] == bundles.second.bundle_id
    # (The test bundles differ by a constant on every kernel weight, which a
    # softmax cancels: the bundle id tells which ran.)
    np.testing.assert_allclose(outputs, local(bundles.second.path), atol=1e-6)


def test_a_subscriber_receives_the_release_event_of_a_push(api: Api, bundles: Bundles) -> None:
    start = poll_events(api.url, after=None, timeout=0).last_id
    with subscribed(api.url, after=start, types=["release", "rollout"]) as (_, received):
        pushed = api.push(bundle_tar(bundles.second.path), rollout=25)
        (event,) = take(received, 1, timeout=20)

    assert pushed.status_code == 201, pushed.text
    assert event.type == "release"
    assert event.data == {
        "version": 2,
        "bundle_id": bundles.second.bundle_id,
        "state": "canary",
        "percent": 25,
    }
