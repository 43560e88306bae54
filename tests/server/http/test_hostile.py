"""Hostile input over real HTTP: every answer is a JSON 4xx with a code, and
a refused request changes nothing, on disk included.

Each case is a defect that was reproduced against the server (a 500, an
accepted bad update, a poisoned model, a file left behind); the server is
the real one (waitress on loopback) and the client is ``requests``.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from fedge.server.http.context import context_of
from fedge.server.http.serve import BackgroundServer
from fedge.server.storage.sqlite.store import SQLiteStore
from fedge.wire.update_codec import decode_update, global_norm
from tests.helpers.stored_updates import stored_records
from tests.helpers.stores import SQLITE_FILE, Stores
from tests.server.conftest import AppFactory, on_each_store
from tests.server.helpers import OCTET, auth, constant_update, json_at, rows_of, settled

Live = Callable[..., "Server"]

# Every app here runs on SQLite and on PostgreSQL (a database per test).
app_database = pytest.fixture(on_each_store, name="app_database")


class Server:
    def __init__(self, app: Any, url: str) -> None:
        self.app = app
        self.url = url
        self.data_dir: Path = context_of(app).config.data_dir

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.post(self.url + path, timeout=30, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.url + path, timeout=30, **kwargs)

    def enrol(self) -> str:
        response = self.post("/v1/devices", json={"platform": "test"})
        assert response.status_code == 201
        return str(response.json()["token"])

    def task(self, token: str) -> dict[str, Any]:
        answer = self.post("/v1/tasks", json={}, headers=auth(token)).json()
        assert answer["task"] is not None, answer
        return dict(answer["task"])

    def selected_devices(self, count: int) -> tuple[list[str], str]:
        """``count`` enrolled devices selected for round 1, and its base checkpoint."""
        tokens = [self.enrol() for _ in range(count)]
        bases = {self.task(token)["base_checkpoint"] for token in tokens}
        assert len(bases) == 1
        return tokens, bases.pop()

    def upload(self, token: str, round_id: int, body: bytes) -> requests.Response:
        return self.post(
            f"/v1/rounds/{round_id}/updates",
            data=body,
            headers={**auth(token), "Content-Type": OCTET},
        )

    def files(self) -> list[Path]:
        return sorted(p for p in (self.data_dir / "updates").rglob("*") if p.is_file())

    def records(self) -> list[bytes]:
        """Every update record in the segments, as stored."""
        return stored_records(self.data_dir / "updates")

    def stored_updates(self) -> int:
        return count_of(self.app, "updates")


def count_of(app: Any, table: str) -> int:
    """The rows of ``table`` in the app's store (either kind)."""
    ((count,),) = rows_of(app, f"SELECT COUNT(*) FROM {table}")
    return int(count)


@pytest.fixture
def live(make_app: AppFactory) -> Iterator[Live]:
    servers: list[BackgroundServer] = []

    def start(**config: Any) -> Server:
        app = make_app(**config)
        server = BackgroundServer(app)
        servers.append(server)
        return Server(app, server.url)

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


def assert_json_error(response: requests.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json"), response.text
    body = response.json()
    assert body["code"] == code, body
    assert body["message"]


def reencode(update: bytes, edit: Callable[[dict[str, Any]], Any]) -> bytes:
    """The same update with its JSON header edited (tensor bytes unchanged)."""
    (length,) = struct.unpack("<Q", update[:8])
    header = json.loads(update[8 : 8 + length])
    edited = edit(header)
    text = edited if isinstance(edited, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + update[8 + length :]


def set_meta(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(header: dict[str, Any]) -> None:
        header["__metadata__"][key] = value

    return edit


def set_entry(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(header: dict[str, Any]) -> None:
        header["dense/bias"][field] = value

    return edit


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


def _raw_header(text: str) -> Callable[[dict[str, Any]], bytes]:
    return lambda header: text.encode()


def _duplicate_names(header: dict[str, Any]) -> bytes:
    text = json.dumps(header)
    entry = json.dumps({"dense/bias": header["dense/bias"]})[1:-1]
    return (text[:-1] + ", " + entry + "}").encode()


MALFORMED_UPDATES: dict[str, Callable[[dict[str, Any]], Any]] = {
    "metadata is a list": lambda h: h.__setitem__("__metadata__", ["format"]),
    "metadata is a string": lambda h: h.__setitem__("__metadata__", "fedge/1"),
    "metadata value not a string": set_meta("num_examples", 5),
    "metrics nested 3000 deep": set_meta("metrics", deep(3000)),
    "metrics with a huge integer": set_meta("metrics", '{"loss": ' + "9" * 4000 + "}"),
    "metrics NaN": set_meta("metrics", '{"loss": NaN}'),
    "metrics not numbers": set_meta("metrics", '{"loss": "low"}'),
    "num_examples with spaces": set_meta("num_examples", " 5 "),
    "num_examples in Arabic-Indic digits": set_meta("num_examples", "\u0665"),
    "round id past 2^63": set_meta("round_id", str(2**64)),
    "unknown metadata key": set_meta("debug", "1"),
    "dtype a list": set_entry("dtype", ["F32"]),
    "shape of strings": set_entry("shape", ["a"]),
    "negative shape": set_entry("shape", [-1]),
    "float shape": set_entry("shape", [2.0]),
    "data_offsets as strings": set_entry("data_offsets", ["0", "8"]),
    "duplicate tensor names": _duplicate_names,
    "header nested 3000 deep": _raw_header(deep(3000)),
    "header not an object": _raw_header("[1, 2]"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_UPDATES))
def test_a_malformed_update_is_a_400_and_stores_nothing(live: Live, case: str) -> None:
    server = live()
    token = server.enrol()
    task = server.task(token)
    body = reencode(constant_update(1, task["base_checkpoint"], 1.0), MALFORMED_UPDATES[case])

    response = server.upload(token, 1, body)

    assert_json_error(response, 400, "malformed_update")
    assert server.stored_updates() == 0 and server.files() == []


def test_names_dtypes_and_shapes_are_checked_from_the_header_before_the_data(
    live: Live,
) -> None:
    server = live()
    token = server.enrol()
    task = server.task(token)
    # The header claims a huge extra tensor; its data is not there at all.
    body = reencode(
        constant_update(1, task["base_checkpoint"], 1.0),
        lambda h: h.__setitem__(
            "extra", {"dtype": "F32", "shape": [1000, 1000], "data_offsets": [24, 4_000_024]}
        ),
    )

    response = server.upload(token, 1, body)

    assert_json_error(response, 422, "wrong_weights")
    assert "unexpected ['extra']" in response.json()["message"]


def test_a_body_far_over_the_model_s_size_is_refused_by_the_http_server(live: Live) -> None:
    server = live()
    token = server.enrol()
    server.task(token)

    response = server.upload(token, 1, b"\0" * (4 * 1024 * 1024))

    assert_json_error(response, 413, "payload_too_large")
    assert server.files() == []


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/devices", deep(10_000)),
        ("/v1/devices", '{"nested": ' + deep(10_000) + "}"),
        ("/v1/devices", '{"platform": NaN}'),
        ("/v1/devices", b"\xff\xfe not utf-8"),
        ("/v1/devices", '{"enrolment_key": 12}'),
        ("/v1/devices", '{"platform": "\\ud800"}'),
        ("/v1/devices", '{"request_id": "short"}'),
        ("/v1/tasks", deep(10_000)),
        ("/v1/tasks", '{"idle": "yes"}'),
        ("/v1/devices/{device}/heartbeat", deep(10_000)),
    ],
)
def test_hostile_json_is_a_400_that_changes_nothing(
    live: Live, path: str, body: str | bytes
) -> None:
    server = live()
    enrolled = server.post("/v1/devices", json={"platform": "test"}).json()
    raw = body.encode() if isinstance(body, str) else body

    response = server.post(
        path.format(device=enrolled["device_id"]),
        data=raw,
        headers={**auth(enrolled["token"]), "Content-Type": "application/json"},
    )

    assert_json_error(response, 400, "bad_json")
    assert count_of(server.app, "devices") == 1
    assert count_of(server.app, "selections") == 0


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        (f"/v1/rounds/{2**63}", 404, "unknown_round"),
        (f"/v1/rounds/{2**70}", 404, "unknown_round"),
        ("/v1/rounds?limit=\u00b9", 400, "bad_query"),
        ("/v1/rounds?limit=-1", 400, "bad_query"),
        ("/v1/rounds?limit=1e3", 400, "bad_query"),
    ],
)
def test_out_of_range_ids_and_queries_are_4xx(
    live: Live, path: str, status: int, code: str
) -> None:
    server = live()

    response = server.get(path)

    assert_json_error(response, status, code)


def test_an_upload_to_a_huge_round_id_is_a_404(live: Live) -> None:
    server = live()
    token = server.enrol()
    task = server.task(token)

    response = server.upload(token, 2**63, constant_update(1, task["base_checkpoint"], 1.0))

    assert_json_error(response, 404, "unknown_round")


def test_a_405_says_which_methods_are_allowed(live: Live) -> None:
    server = live()

    response = requests.delete(server.url + "/v1/devices", timeout=30)

    assert_json_error(response, 405, "method_not_allowed")
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"POST"}


def test_a_huge_finite_update_does_not_overflow_the_weighted_sum(live: Live) -> None:
    """3e38 is a finite float32; weighted by 3 in float32 it overflowed to
    inf, and so did every weight of the new model."""
    server = live(max_update_norm=0, rounds={"target_participants": 2})
    tokens, base = server.selected_devices(2)

    server.upload(tokens[0], 1, constant_update(1, base, 0.0, num_examples=1))
    server.upload(tokens[1], 1, constant_update(1, base, 3.0e38, num_examples=3))

    round_one = settled(json_at(server.url), 1)
    assert round_one["state"] == "closed"
    reply = server.get(f"/v1/checkpoints/{round_one['result_checkpoint']}", headers=auth(tokens[0]))
    from fedge.wire.update_codec import decode_checkpoint

    # (1 * 0 + 3 * 3e38) / 4 = 2.25e38, finite.
    bias = decode_checkpoint(reply.content).weights["dense/bias"]
    np.testing.assert_allclose(bias, [2.25e38, 2.25e38], rtol=1e-6)


def test_a_round_whose_result_is_not_finite_fails_and_the_model_stays(live: Live) -> None:
    """A server step of 2 takes 3e38 past float32's range: the round fails
    visibly, the current checkpoint stays, the next round trains from it, and
    the API stays strict JSON."""
    server = live(
        max_update_norm=0, strategy_params={"server_lr": 2.0}, rounds={"target_participants": 2}
    )
    tokens, base = server.selected_devices(2)

    server.upload(tokens[0], 1, constant_update(1, base, 3.0e38))
    server.upload(tokens[1], 1, constant_update(1, base, 2.9e38))

    round_one = settled(json_at(server.url), 1)
    assert round_one["state"] == "failed"
    assert "not finite" in round_one["metrics"]["reason"]
    assert round_one["result_checkpoint"] is None
    listing = server.get("/v1/rounds").text
    json.loads(listing, parse_constant=lambda name: pytest.fail(f"{name} in /v1/rounds"))
    assert server.get("/healthz").json()["checkpoint"] == base
    assert server.task(tokens[0])["base_checkpoint"] == base  # round 2 trains from it
    assert 'fedge_rounds_total{outcome="failed"} 1' in server.get("/metrics").text


def test_by_default_the_norm_bound_clips_a_huge_update(live: Live) -> None:
    # Issue 22: clip, not refuse, by default (a refusal only makes an
    # attacker send less); the stored update is the clipped one.
    server = live()
    token = server.enrol()
    base = server.task(token)["base_checkpoint"]

    response = server.upload(token, 1, constant_update(1, base, 3.0e38))

    assert response.status_code == 201, response.text
    assert response.json()["clipped"] is True
    (stored,) = server.records()
    deltas = decode_update(stored).deltas
    # The tiny model has 6 weights: a new server's first bound is 10 * sqrt(6).
    assert global_norm(deltas) == pytest.approx(10 * math.sqrt(6), rel=1e-6)


def test_the_reject_policy_refuses_a_huge_update(live: Live) -> None:
    server = live(norm_policy="reject")
    token = server.enrol()
    base = server.task(token)["base_checkpoint"]

    response = server.upload(token, 1, constant_update(1, base, 3.0e38))

    assert_json_error(response, 422, "norm_too_large")
    assert f"{10 * math.sqrt(6):.4g}" in response.json()["message"]
    assert server.files() == []


def test_concurrent_retries_of_the_same_bytes_get_one_201_and_200s(live: Live) -> None:
    server = live(rounds={"target_participants": 5})
    token = server.enrol()
    body = constant_update(1, server.task(token)["base_checkpoint"], 1.0)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: server.upload(token, 1, body), range(8)))

    assert sorted(a.status_code for a in answers) == [200] * 7 + [201]
    assert len({json.dumps(a.json(), sort_keys=True) for a in answers}) == 1
    metrics = server.get("/metrics").text
    assert "fedge_updates_accepted_total 1" in metrics
    assert len(server.files()) == 1


def test_concurrent_different_updates_of_one_device_leave_one_file(live: Live) -> None:
    server = live(rounds={"target_participants": 5})
    token = server.enrol()
    base = server.task(token)["base_checkpoint"]
    bodies = [constant_update(1, base, 0.1 * (i + 1)) for i in range(8)]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda body: server.upload(token, 1, body), bodies))

    assert sorted(a.status_code for a in answers) == [201] + [409] * 7
    assert {a.json()["code"] for a in answers if a.status_code == 409} == {"duplicate_update"}
    assert server.stored_updates() == 1 and len(server.files()) == 1


def test_another_device_cannot_replay_an_update(live: Live) -> None:
    server = live(rounds={"target_participants": 5})
    first, second = server.enrol(), server.enrol()
    base = server.task(first)["base_checkpoint"]
    server.task(second)
    body = constant_update(1, base, 1.0)

    original = server.upload(first, 1, body)
    replay = server.upload(second, 1, body)

    assert original.status_code == 201
    assert_json_error(replay, 409, "duplicate_content")
    assert server.stored_updates() == 1 and len(server.files()) == 1


def test_a_retried_enrolment_is_the_same_device(live: Live) -> None:
    server = live()
    request = {"platform": "test", "request_id": "r" * 32}

    first = server.post("/v1/devices", json=request)
    retry = server.post("/v1/devices", json=request)
    other = server.post("/v1/devices", json={**request, "request_id": "s" * 32})

    assert (first.status_code, retry.status_code, other.status_code) == (201, 200, 201)
    assert retry.json()["device_id"] == first.json()["device_id"]
    assert other.json()["device_id"] != first.json()["device_id"]
    # The retry's token is the device's token now; the lost one no longer works.
    assert server.post("/v1/tasks", json={}, headers=auth(retry.json()["token"])).ok
    stale = server.post("/v1/tasks", json={}, headers=auth(first.json()["token"]))
    assert_json_error(stale, 401, "unauthorized")


def test_get_routes_never_write(live: Live, stores: Stores) -> None:
    server = live()
    before = stores.dump(server.data_dir)
    sqlite_changes = _sqlite_changes(server)

    for path in ("/v1/rounds/current", "/v1/rounds", "/v1/rounds/1", "/healthz", "/metrics"):
        assert server.get(path).status_code == 200

    assert count_of(server.app, "rounds") == 1
    assert stores.dump(server.data_dir) == before
    assert _sqlite_changes(server) == sqlite_changes
    assert server.data_dir.stat().st_mode & 0o777 == 0o700
    database = server.data_dir / SQLITE_FILE
    assert not database.exists() or database.stat().st_mode & 0o077 == 0


def _sqlite_changes(server: Server) -> int | None:
    """SQLite's count of rows written by the app's connection (it counts even
    a write that changes nothing); None on PostgreSQL, whose dump says it."""
    store = context_of(server.app).store
    return store.db.connection().total_changes if isinstance(store, SQLiteStore) else None


def test_checkpoints_are_private_and_streamed_with_ranges(live: Live) -> None:
    server = live()
    token = server.enrol()
    base = server.task(token)["base_checkpoint"]

    whole = server.get(f"/v1/checkpoints/{base}", headers=auth(token))
    part = server.get(f"/v1/checkpoints/{base}", headers={**auth(token), "Range": "bytes=0-7"})

    assert whole.status_code == 200
    assert "private" in whole.headers["Cache-Control"]
    assert "public" not in whole.headers["Cache-Control"]
    assert whole.headers["ETag"] == f'"{base}"'
    assert part.status_code == 206 and part.content == whole.content[:8]
    import hashlib

    assert hashlib.sha256(whole.content).hexdigest() == base


def test_a_second_server_on_the_data_directory_is_refused_unless_on_postgresql(
    make_app: AppFactory, stores: Stores
) -> None:
    from fedge.server.errors import ConfigurationError

    first = make_app()

    if stores.kind == "sqlite":
        with pytest.raises(ConfigurationError, match="in use by another fedge server"):
            make_app()
    else:  # a second worker on the same database shares the directory
        second = make_app()
        assert count_of(second, "rounds") == count_of(first, "rounds") == 1


def test_a_device_s_weight_is_capped(live: Live) -> None:
    server = live(max_example_weight=10, rounds={"target_participants": 2})
    tokens, base = server.selected_devices(2)

    server.upload(tokens[0], 1, constant_update(1, base, 1.0, num_examples=10))
    server.upload(tokens[1], 1, constant_update(1, base, 4.0, num_examples=1_000_000))

    round_one = settled(json_at(server.url), 1)
    weights = server.get(
        f"/v1/checkpoints/{round_one['result_checkpoint']}", headers=auth(tokens[0])
    )
    from fedge.wire.update_codec import decode_checkpoint

    # Both weigh 10: (10 * 1 + 10 * 4) / 20 = 2.5, not ~4 as a million examples would make it.
    np.testing.assert_allclose(decode_checkpoint(weights.content).weights["dense/bias"], [2.5, 2.5])
