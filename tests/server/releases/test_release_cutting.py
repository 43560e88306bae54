"""Cutting a release from a round's checkpoint, in a worker process.

Real ``fedge serve`` processes over real HTTP, started from a small real
bundle (:mod:`tests.helpers.release_bundles`); devices upload real updates,
rounds close, and the server converts a checkpoint into a new bundle in a
``python -m fedge.server.releases.build.worker`` process while it goes on
serving. The pure parts (the options a build copies from the live bundle,
the progress codec, the policy's arithmetic) are tested on their own first.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from fedge.bundle.manifest import Manifest, open_bundle
from fedge.converters.rebuild.options import options_like
from fedge.server.releases.build.builder import BUILDS_DIR
from fedge.server.releases.build.wire import BuildJob, BuildProgress, BuildWireError
from fedge.server.releases.policy import is_due
from fedge.server.releases.rollout import in_canary
from fedge.server.storage.bundles import BUNDLES_DIR
from fedge.wire.update_codec import Update, UpdateMeta, decode_checkpoint, encode_update
from tests.helpers.live_server import LiveServer, running
from tests.helpers.release_api import ReleaseApi, stored_slice_key
from tests.helpers.release_bundles import MODEL_NAME, Built, build
from tests.helpers.stores import Stores

ADMIN = {"Authorization": "Bearer admin-secret"}
OCTET = "application/octet-stream"
WORKER_MODULE = "fedge.server.releases.build.worker"
SHAPES = {"dense/kernel": (4, 3), "dense/bias": (3,)}  # the tinyrel model
BUILD_TIMEOUT_S = 180.0


# --- pure parts ----------------------------------------------------------------


def test_a_build_copies_the_live_bundles_targets_and_bounds(bundles: Bundles) -> None:
    manifest = open_bundle(bundles.first.path).manifest

    options = options_like(manifest, version="7")

    assert options.targets == ("tflite",)
    assert (options.name, options.version, options.labels) == (MODEL_NAME, "7", None)
    assert (options.tflite_quantize, options.tflite_training) == ("none", True)
    assert (options.loss, options.from_logits) == ("sparse_categorical_crossentropy", False)
    assert options.verify and options.strict
    assert options.tolerance("tflite").max_abs_err == 1e-4  # as recorded in its parity
    options.validate()


def test_a_build_copies_every_targets_settings() -> None:
    manifest = Manifest.from_json(
        {
            "format": "fedge-bundle/1",
            "name": "m",
            "version": "3",
            "created": "2026-01-01T00:00:00+00:00",
            "inputs": [],
            "outputs": [],
            "weights": [],
            "labels": ["a", "b"],
            "artifacts": {
                "keras": {"entry": "keras/model.keras", "files": []},
                "weights": {"entry": "weights.safetensors", "files": []},
                "tflite": {"quantization": "fp16", "training": None, "training_skipped": "x"},
                "tfjs": {"quantization": "uint8", "shard_bytes": 2048},
                "coreml": {"precision": "fp32", "minimum_deployment_target": "iOS17"},
            },
            "parity": {
                "tfjs": {"status": "pass", "tolerance": {"min_top1_agreement": 0.9}},
                "coreml": {"status": "unverified", "tolerance": {"max_abs_err": 0.5}},
            },
        }
    )

    options = options_like(manifest, version="4")

    assert options.targets == ("tflite", "tfjs", "coreml")
    assert (options.tflite_quantize, options.tflite_training, options.loss) == ("fp16", False, None)
    assert (options.tfjs_quantize, options.tfjs_shard_bytes) == ("uint8", 2048)
    assert (options.coreml_precision, options.coreml_minimum_target) == ("fp32", "iOS17")
    assert options.labels == ("a", "b")
    assert options.tolerance("tfjs").min_top1_agreement == 0.9
    assert options.tolerance("coreml").max_abs_err == 0.5
    assert options.tolerance("tflite").max_rel_err == 1e-2  # fp16's default: no record
    options.validate()


def test_progress_and_jobs_cross_the_process_boundary_as_json_lines() -> None:
    progress = BuildProgress(stage="tflite", message="checking parity", at=12.5)
    job = BuildJob(
        live_bundle="/d/bundles/ab", checkpoint="/d/c.safetensors", out="/d/b", version="2",
        parent_pid=41,
    )  # fmt: skip

    assert BuildProgress.from_line(progress.to_line()) == progress
    assert progress.to_line().endswith("\n") and "\n" not in progress.to_line()[:-1]
    assert BuildJob.from_line(job.to_line()) == job
    for junk in ("", "not json", "[]", '{"stage": 1, "message": "m", "at": 0}'):
        with pytest.raises(BuildWireError):
            BuildProgress.from_line(junk)


@pytest.mark.parametrize(
    ("closed", "every", "due"),
    [(0, 2, False), (1, 2, False), (2, 2, True), (3, 2, False), (4, 2, True), (3, 0, False),
     (1, 1, True)],
)  # fmt: skip
def test_the_policy_cuts_after_every_n_closed_rounds(closed: int, every: int, due: bool) -> None:
    assert is_due(closed, every) is due


# --- fixtures: bundles, servers, devices ----------------------------------------


@dataclass(frozen=True)
class Bundles:
    first: Built
    with_lambda: Path  # a bundle whose Keras model has a Python Lambda layer


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Bundles:
    root = tmp_path_factory.mktemp("cut-bundles")
    return Bundles(first=build(root, "first", 0.0), with_lambda=_lambda_bundle(root))


def _lambda_bundle(root: Path) -> Path:
    """The tinyrel model behind a Lambda layer: converting it needed
    --unsafe-deserialization, and the server never runs such code."""
    import tensorflow as tf

    from fedge.converters.bundle import convert
    from fedge.converters.options import ConvertOptions

    inputs = tf.keras.Input((4,), name="x")
    doubled = tf.keras.layers.Lambda(lambda t: t * 2.0, name="double")(inputs)
    outputs = tf.keras.layers.Dense(3, activation="softmax", name="dense")(doubled)
    model = tf.keras.Model(inputs, outputs, name=MODEL_NAME)
    model.compile(loss="sparse_categorical_crossentropy", optimizer="sgd")
    model.save(root / "lambda.keras")
    options = ConvertOptions(targets=("tflite",), unsafe_deserialization=True)
    return convert(root / "lambda.keras", root / "lambda", options).path


@dataclass
class Api:
    server: LiveServer
    data_dir: Path
    stores: Stores = field(default_factory=lambda: Stores("sqlite"))

    @property
    def url(self) -> str:
        return self.server.url

    def cut(self, body: dict[str, Any] | None = None, **kw: Any) -> requests.Response:
        return requests.post(
            f"{self.url}/v1/admin/releases", json=body or {}, timeout=30, **{"headers": ADMIN, **kw}
        )

    def release(self, version: int) -> dict[str, Any]:
        reply = requests.get(f"{self.url}/v1/releases/{version}", timeout=30)
        assert reply.status_code == 200, reply.text
        record: dict[str, Any] = reply.json()
        return record

    def releases(self) -> dict[str, Any]:
        listing: dict[str, Any] = requests.get(f"{self.url}/v1/releases", timeout=30).json()
        return listing

    def changes(self) -> list[dict[str, Any]]:
        reply = requests.get(f"{self.url}/v1/admin/release-changes", headers=ADMIN, timeout=30)
        changes: list[dict[str, Any]] = reply.json()["changes"]
        return changes

    def built(self, version: int) -> dict[str, Any]:
        """The release once its build has ended (whatever the outcome)."""
        record: dict[str, Any] = wait_for(lambda: _ended(self.release(version)), BUILD_TIMEOUT_S)
        return record

    def bundle_dirs(self) -> list[str]:
        return sorted(p.name for p in (self.data_dir / BUNDLES_DIR).iterdir())

    def events(self) -> list[tuple[Any, ...]]:
        """The (version, state) of each stored release event, in order."""
        return [
            (p.get("version"), p.get("state")) for _, p in self._store().stored_events(["release"])
        ]

    def _store(self) -> ReleaseApi:
        return ReleaseApi(self.server, self.data_dir, self.stores)


def _ended(record: dict[str, Any]) -> dict[str, Any] | None:
    return None if record["state"] == "building" else record


def wait_for(probe: Callable[[], Any], timeout: float, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {probe}")
        time.sleep(every)


class Device:
    def __init__(self, url: str) -> None:
        self.url = url
        body = requests.post(f"{url}/v1/devices", json={"platform": "t"}, timeout=30).json()
        self.id, self.token = body["device_id"], body["token"]
        self.auth = {"Authorization": f"Bearer {self.token}"}

    def train(self, value: float) -> requests.Response:
        """Ask for a task and upload a delta of ``value`` everywhere."""
        task = requests.post(f"{self.url}/v1/tasks", json={}, headers=self.auth, timeout=30)
        assert task.json()["task"] is not None, task.text
        round_id, base = task.json()["task"]["round_id"], task.json()["task"]["base_checkpoint"]
        deltas = {name: np.full(shape, value, np.float32) for name, shape in SHAPES.items()}
        meta = UpdateMeta(round_id=round_id, base_checkpoint=base, num_examples=1)
        return requests.post(
            f"{self.url}/v1/rounds/{round_id}/updates",
            data=encode_update(Update(meta=meta, deltas=deltas)),
            headers={**self.auth, "Content-Type": OCTET},
            timeout=30,
        )

    def checkpoint(self, checkpoint_id: str) -> dict[str, Any]:
        reply = requests.get(
            f"{self.url}/v1/checkpoints/{checkpoint_id}", headers=self.auth, timeout=30
        )
        assert reply.status_code == 200, reply.text
        return dict(decode_checkpoint(reply.content).weights)

    def current(self) -> dict[str, Any]:
        reply = requests.get(f"{self.url}/v1/releases/current", headers=self.auth, timeout=30)
        assert reply.status_code == 200, reply.text
        current: dict[str, Any] = reply.json()
        return current


def closed_round(url: str, round_id: int) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        record: dict[str, Any] = requests.get(f"{url}/v1/rounds/{round_id}", timeout=30).json()
        return record if record.get("state") == "closed" else None

    found: dict[str, Any] = wait_for(probe, 60)
    return found


ROUNDS = ["--rounds-target", "2", "--rounds-min", "2", "--deadline", "600"]


@contextlib.contextmanager
def serving(
    model: Path, tmp_path: Path, stores: Stores | None = None, **environ: str
) -> Iterator[Api]:
    """A server from ``model``, on the store kind of ``stores`` (SQLite unless given)."""
    stores = stores or Stores("sqlite")
    data_dir = tmp_path / "data"
    env = {**os.environ, **environ}
    args = ["--model", str(model), *ROUNDS, *stores.serve_args(data_dir)]
    with running(data_dir, args, tmp_path / "server.log", environ=env) as server:
        yield Api(server, data_dir, stores)


def worker_of(api: Api) -> int:
    """The pid of the release worker the server runs (waits for it)."""

    def probe() -> int | None:
        found = [pid for pid in workers_in(api.data_dir) if _parent(pid) == api.server.process.pid]
        return found[0] if found else None

    pid: int = wait_for(probe, 60)
    return pid


def gone(pid: int, timeout: float = 15) -> bool:
    """Whether the process has ended within ``timeout`` (a zombie has)."""
    try:
        return bool(wait_for(lambda: _state(pid) in (None, "Z"), timeout))
    except AssertionError:
        return False


def workers_in(data_dir: Path) -> list[int]:
    """The live release workers of a data directory: each runs in its
    build's directory (Linux: read from /proc; other tests' servers on this
    machine have theirs elsewhere)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _state(int(entry.name)) not in (None, "Z"):
            with contextlib.suppress(OSError):
                is_worker = WORKER_MODULE.encode() in (entry / "cmdline").read_bytes()
                if is_worker and os.readlink(entry / "cwd").startswith(str(data_dir)):
                    found.append(int(entry.name))
    return found


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat's fields after the command name (state, ppid, ...)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _state(pid: int) -> str | None:
    fields = _stat(pid)
    return fields[0] if fields else None


def _parent(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[1]) if fields else None


# --- cutting a release ------------------------------------------------------------


def test_a_round_checkpoint_becomes_a_canary_release(
    bundles: Bundles, stores: Stores, tmp_path: Path
) -> None:
    with serving(bundles.first.path, tmp_path, stores) as api:
        devices = [Device(api.url) for _ in range(10)]
        receipts = [d.train(v) for d, v in zip(devices[:2], (1.0, 3.0), strict=True)]
        assert [r.status_code for r in receipts] == [201, 201]
        checkpoint = closed_round(api.url, 1)["result_checkpoint"]

        reply = api.cut(
            {"checkpoint": checkpoint, "notes": "round 1", "rollout": 50, "by": "ana", "why": "ok"}
        )
        again = api.cut()
        building = api.release(2)
        # Rounds go on while the worker converts.
        during = [d.train(v) for d, v in zip(devices[2:4], (5.0, 7.0), strict=True)]
        round_two = closed_round(api.url, 2)
        still = api.release(2)
        done = api.built(2)

        assert reply.status_code == 202, reply.text
        assert reply.headers["Location"].endswith("/v1/releases/2")
        cut = reply.json()
        assert (cut["version"], cut["state"], cut["source"]) == (2, "building", "round:1")
        assert (cut["bundle_id"], cut["notes"], cut["created_by"]) == (None, "round 1", "ana")
        assert (again.status_code, again.json()["code"]) == (409, "release_building")
        assert building["state"] == "building"
        assert set(building["progress"]) == {"stage", "message", "at"}
        assert [r.status_code for r in during] == [201, 201]
        assert round_two["state"] == "closed" and still["state"] == "building"
        assert (done["state"], done["percent"], done["error"]) == ("canary", 50, None), done
        assert "progress" not in done  # shown while building only
        bundle = api.data_dir / BUNDLES_DIR / done["bundle_id"]
        manifest = open_bundle(bundle, expected_id=done["bundle_id"]).manifest
        assert (manifest.name, manifest.version) == (MODEL_NAME, "2")
        assert sorted(manifest.artifacts) == ["keras", "tflite", "weights"]
        assert manifest.parity["tflite"]["status"] == "pass"
        expected = devices[0].checkpoint(checkpoint)  # the mean of 1 and 3: every weight 2
        got = decode_checkpoint((bundle / "weights.safetensors").read_bytes()).weights
        assert got.keys() == expected.keys()
        for name, value in expected.items():
            np.testing.assert_array_equal(got[name], value)
        np.testing.assert_allclose(expected["dense/bias"], [2.0, 2.0, 2.0])
        for device in devices:
            current = device.current()
            canary = in_canary(
                stored_slice_key(api.data_dir, api.stores), done["bundle_id"], device.id, 50
            )
            assert (current["version"], current["channel"]) == (
                (2, "canary") if canary else (1, "live")
            )
        assert {d.current()["version"] for d in devices} == {1, 2}  # 10 devices, 50 %
        actions = [(c["action"], c["version"], c["actor"]) for c in api.changes()]
        assert actions[:2] == [("built", 2, "ana"), ("cut", 2, "ana")]
        assert api.changes()[1]["details"]["checkpoint"] == checkpoint
        assert api.events()[-2:] == [(2, "building"), (2, "canary")]
        assert not list((api.data_dir / BUILDS_DIR).glob("*"))
        assert api.releases()["rollout"] == {"live": 1, "candidate": 2, "percent": 50}


def test_the_current_checkpoint_is_cut_by_default_and_refusals_change_nothing(
    bundles: Bundles, stores: Stores, tmp_path: Path
) -> None:
    with serving(bundles.first.path, tmp_path, stores) as api:
        device = Device(api.url)
        before = api.releases()
        refusals = [
            api.cut({"checkpoint": "f" * 64}),
            api.cut({"checkpoint": "nope"}),
            api.cut({"rollout": 101}),
            api.cut({}, headers={}),
            api.cut({}, headers=device.auth),  # a device is not the admin
        ]
        unchanged = api.releases()

        reply = api.cut()
        done = api.built(2)

    assert [(r.status_code, r.json()["code"]) for r in refusals] == [
        (404, "unknown_checkpoint"),
        (400, "bad_json"),
        (400, "bad_json"),
        (401, "unauthorized"),
        (403, "not_admin"),
    ]
    assert unchanged == before
    assert reply.status_code == 202, reply.text
    assert (reply.json()["source"], reply.json()["percent"]) == ("round:0", 10)
    assert (done["state"], done["percent"]) == ("canary", 10), done


def test_a_server_without_a_live_release_says_to_push_one_first(
    bundles: Bundles, tmp_path: Path
) -> None:
    with serving(bundles.first.keras_path, tmp_path) as api:
        reply = api.cut()
        listing = api.releases()

    assert (reply.status_code, reply.json()["code"]) == (409, "no_live_release")
    assert "push a bundle" in reply.json()["message"]
    assert listing["releases"] == []


def test_the_policy_cuts_a_release_after_every_n_rounds(
    bundles: Bundles, stores: Stores, tmp_path: Path
) -> None:
    with serving(bundles.first.path, tmp_path, stores, FEDGE_RELEASE_EVERY_ROUNDS="2") as api:
        devices = [Device(api.url) for _ in range(2)]
        for round_id, value in ((1, 1.0), (2, 2.0)):
            # Two values: the same bytes from two devices would be a replay.
            replies = [d.train(v) for d, v in zip(devices, (value, value + 2), strict=True)]
            assert [r.status_code for r in replies] == [201, 201]
            checkpoint = closed_round(api.url, round_id)["result_checkpoint"]
            if round_id == 1:
                time.sleep(1.5)  # three ticks of the round driver: no release for round 1
                assert [r["version"] for r in api.releases()["releases"]] == [1]

        wait_for(lambda: len(api.releases()["releases"]) == 2, 30)
        done = api.built(2)
        expected = devices[0].checkpoint(checkpoint)

    assert (done["source"], done["created_by"], done["state"]) == (
        "round:2",
        "release policy",
        "canary",
    ), done
    bundle = api.data_dir / BUNDLES_DIR / done["bundle_id"]
    got = decode_checkpoint((bundle / "weights.safetensors").read_bytes()).weights
    for name, value in expected.items():
        np.testing.assert_array_equal(got[name], value)


# --- failures and crashes ------------------------------------------------------------


def test_a_failing_conversion_ends_failed_and_changes_nothing_else(
    bundles: Bundles, stores: Stores, tmp_path: Path
) -> None:
    with serving(bundles.with_lambda, tmp_path, stores) as api:
        before = api.releases(), api.bundle_dirs()

        reply = api.cut({"why": "try it"})
        done = api.built(2)
        after = api.releases()
        changes = api.changes()
        again = api.cut()  # the failed build holds nothing: a new one may start
        api.built(3)

    assert reply.status_code == 202, reply.text
    assert done["state"] == "failed" and done["bundle_id"] is None
    assert "Lambda" in done["error"], done
    assert after["rollout"] == before[0]["rollout"] == {"live": 1, "candidate": None, "percent": 0}
    assert [r for r in after["releases"] if r["version"] == 1] == before[0]["releases"]
    assert api.bundle_dirs() == before[1]
    assert (changes[0]["action"], changes[0]["version"]) == ("build_failed", 2)
    assert changes[0]["why"] == done["error"]
    assert again.status_code == 202, again.text
    assert not list((api.data_dir / BUILDS_DIR).glob("*"))


def test_kill_9_during_a_conversion_leaves_no_half_made_release(
    bundles: Bundles, tmp_path: Path
) -> None:
    with serving(bundles.first.path, tmp_path) as api:
        before = api.bundle_dirs()
        assert api.cut().status_code == 202
        worker = worker_of(api)
        assert api.release(2)["state"] == "building"

        api.server.kill_hard()

        assert gone(worker), "the worker outlived the server"
    with serving(bundles.first.path, tmp_path) as restarted:
        record = restarted.release(2)
        changes = restarted.changes()
        bundle_dirs = restarted.bundle_dirs()
        builds = list((restarted.data_dir / BUILDS_DIR).glob("*"))
        assert [r["version"] for r in restarted.releases()["releases"]] == [2, 1]

    assert (record["state"], record["bundle_id"]) == ("failed", None), record
    assert "interrupted by a restart" in record["error"]
    assert (changes[0]["action"], changes[0]["actor"]) == ("build_failed", "fedge serve")
    assert bundle_dirs == before
    assert builds == []
    assert workers_in(tmp_path / "data") == []


def test_stopping_the_server_stops_its_worker(bundles: Bundles, tmp_path: Path) -> None:
    with serving(bundles.first.path, tmp_path) as api:
        assert api.cut().status_code == 202
        worker = worker_of(api)

        api.server.process.send_signal(signal.SIGTERM)
        api.server.process.wait(timeout=60)

        assert gone(worker, timeout=5)
    with serving(bundles.first.path, tmp_path) as restarted:
        record = restarted.release(2)

    assert record["state"] == "failed"
    assert "stopped" in record["error"], record
    assert workers_in(tmp_path / "data") == []


def test_a_build_past_its_time_limit_is_stopped_and_fails(bundles: Bundles, tmp_path: Path) -> None:
    with serving(bundles.first.path, tmp_path, FEDGE_RELEASE_BUILD_TIMEOUT_S="1") as api:
        assert api.cut().status_code == 202
        done = api.built(2)
        listing = api.releases()

    assert done["state"] == "failed"
    assert "release_build_timeout_s" in done["error"], done
    assert listing["rollout"] == {"live": 1, "candidate": None, "percent": 0}
    assert workers_in(tmp_path / "data") == []
