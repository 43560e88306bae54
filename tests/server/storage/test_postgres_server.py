"""``fedge serve --database postgresql://...`` over real HTTP, next to the
default SQLite server given the same updates: rounds close into the same
aggregate (1e-6), a release is pushed and canary reports are counted alike,
and every row is in PostgreSQL (no SQLite file in the data directory)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from fedge.server.storage.sqlite.migrations import LATEST
from fedge.wire.update_codec import Update, UpdateMeta, decode_checkpoint, encode_update
from tests.helpers.live_server import running
from tests.helpers.postgres import PostgresCluster
from tests.helpers.release_bundles import Built, build
from tests.server.helpers import auth, json_at, settled
from tests.server.http.test_http import Device
from tests.server.releases.test_canary import Api, evaluation

SHAPES = {"dense/kernel": (4, 3), "dense/bias": (3,)}  # the release bundles' model
FLAGS = ["--rounds-target", "3", "--rounds-min", "3", "--deadline", "300"]
SETTINGS = {"FEDGE_CANARY_MIN_REPORTS": "3", "FEDGE_CANARY_REQUIRE_HISTORY": "false"}


@dataclass(frozen=True)
class Outcome:
    checkpoints: list[dict[str, Any]]
    states: dict[int, str]
    canary: dict[str, Any]


def update(round_id: int, base: str, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    deltas = {name: rng.normal(size=shape).astype(np.float32) for name, shape in SHAPES.items()}
    meta = UpdateMeta(round_id=round_id, base_checkpoint=base, num_examples=1 + seed % 5)
    return encode_update(Update(meta=meta, deltas=deltas))


def play(server_url: str, api: Api, second: Built) -> Outcome:
    devices = [Device(server_url) for _ in range(3)]
    checkpoints = []
    for round_id in (1, 2):
        base = devices[0].task()["base_checkpoint"]
        for device in devices[1:]:
            device.task()
        receipts = [
            d.upload(server_url, round_id, update(round_id, base, 10 * round_id + i))
            for i, d in enumerate(devices)
        ]
        assert [r.status_code for r in receipts] == [201] * 3, receipts[0].text
        closed = settled(json_at(server_url), round_id)
        assert closed["state"] == "closed", closed
        body = requests.get(
            f"{server_url}/v1/checkpoints/{closed['result_checkpoint']}",
            headers=auth(devices[0].token),
            timeout=30,
        ).content
        checkpoints.append(decode_checkpoint(body).weights)
    api.push_candidate(second, rollout=100)
    for i, device in enumerate(devices):
        reply = api.report(device.token, 2, evaluation(0.9, 0.8, 10 + i))
        assert reply.status_code == 201, reply.text
    canary = api.release(2)["canary"]
    return Outcome(checkpoints, api.states(), canary)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> tuple[Built, Built]:
    root = tmp_path_factory.mktemp("pg-bundles")
    return build(root, "first", 0.0), build(root, "second", 1.0)


def test_a_postgresql_server_ends_where_the_sqlite_one_does(
    postgres_cluster: PostgresCluster, bundles: tuple[Built, Built], tmp_path: Path
) -> None:
    first, second = bundles
    environ = {**os.environ, **SETTINGS}
    outcomes = {}
    url = postgres_cluster.new_database("served")
    for kind, extra in (("sqlite", []), ("postgres", ["--database", url])):
        data_dir = tmp_path / kind
        args = ["--model", str(first.path), *FLAGS, *extra]
        with running(data_dir, args, tmp_path / f"{kind}.log", environ=environ) as server:
            outcomes[kind] = play(server.url, Api(server, data_dir), second)

    sqlite, postgres = outcomes["sqlite"], outcomes["postgres"]
    for ours, theirs in zip(postgres.checkpoints, sqlite.checkpoints, strict=True):
        for name in SHAPES:
            np.testing.assert_allclose(ours[name], theirs[name], rtol=0, atol=1e-6)
    assert postgres.states == sqlite.states == {1: "live", 2: "canary"}
    assert postgres.canary == sqlite.canary and postgres.canary["reports"] == 3
    # Everything went to PostgreSQL: rows there, no SQLite file beside the blobs.
    assert not (tmp_path / "postgres" / "fedge.sqlite3").exists()
    counts = postgres_cluster.sql(
        "SELECT (SELECT COUNT(*) FROM updates), (SELECT COUNT(*) FROM canary_evaluations), "
        "(SELECT MAX(version) FROM schema_version)",
        "served",
    )
    assert counts == [(6, 3, LATEST)]
