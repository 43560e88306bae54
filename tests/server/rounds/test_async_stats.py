"""``GET /v1/stats``' ``aggregation`` object, on a sequence of uploads whose
numbers can be counted by hand: the version, the buffer fill, the leases in
use, the staleness histogram of the accepted updates, the uploads refused
as too stale and the versions made per minute (over ten minutes)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from fedge.server.http.app import shutdown
from tests.server.conftest import AppFactory, Connect
from tests.server.helpers import constant_update, join, json_of, settled, upload
from tests.server.rounds.test_async import async_app
from tests.server.rounds.test_rounds import enrol

SPEC = Path(__file__).resolve().parents[3] / "server" / "openapi.yaml"


def documented(body: Any) -> None:
    """``body`` is what server/openapi.yaml says ``GET /v1/stats`` answers."""
    spec = yaml.safe_load(SPEC.read_text())
    schema = {"$ref": "#/components/schemas/Stats", "components": spec["components"]}
    Draft202012Validator(schema).validate(body)


def aggregation(client: Any) -> dict[str, Any]:
    response = client.get("/v1/stats")
    assert response.status_code == 200
    documented(response.get_json())
    return dict(response.get_json()["aggregation"])


def test_the_async_numbers_follow_the_uploads(
    make_app: AppFactory, connect: Connect, tmp_path: Path
) -> None:
    app = async_app(make_app, tmp_path / "data", buffer=2, concurrency=4, max_staleness=1)
    client = connect(app)
    a, b, c, d, f = (enrol(client)[1] for _ in range(5))
    base1 = join(client, a)["base_checkpoint"]
    for token in (b, c, f):
        join(client, token)
    start = aggregation(client)
    assert start.pop("refused_stale_since") <= time.time()
    assert start == {
        "mode": "async",
        "version": 1,
        "versions_per_minute": 0.0,
        "buffer": {"filled": 0, "size": 2},
        "concurrency": {"in_use": 4, "limit": 4},
        "staleness_histogram": {},
        "refused_stale": 0,
    }

    assert upload(client, a, 1, constant_update(1, base1, 1.0)).status_code == 201
    assert upload(client, b, 1, constant_update(1, base1, 2.0)).status_code == 201
    assert settled(json_of(client), 1)["state"] == "closed"
    assert upload(client, c, 1, constant_update(1, base1, 3.0)).status_code == 201  # stale 1
    now = aggregation(client)
    assert now["version"] == 2 and now["buffer"] == {"filled": 1, "size": 2}
    assert now["concurrency"]["in_use"] == 1  # F still trains; A, B, C are done
    assert now["staleness_histogram"] == {"0": 2, "1": 1}
    assert now["versions_per_minute"] == 0.1  # one version in ten minutes

    task_d = join(client, d)
    assert task_d["round_id"] == 2
    body = constant_update(2, task_d["base_checkpoint"], 4.0)
    assert upload(client, d, 2, body).status_code == 201
    assert settled(json_of(client), 2)["state"] == "closed"
    refused = upload(client, f, 1, constant_update(1, base1, 5.0))  # 2 versions behind
    assert refused.get_json()["code"] == "too_stale"
    now = aggregation(client)
    assert (now["version"], now["buffer"]["filled"]) == (3, 0)
    assert now["staleness_histogram"] == {"0": 3, "1": 1}
    assert now["refused_stale"] == 1
    assert now["concurrency"]["in_use"] == 0  # F's version-1 lease can bring nothing now
    assert now["versions_per_minute"] == 0.2


def test_sync_mode_says_only_its_mode(
    make_app: AppFactory, connect: Connect, tmp_path: Path
) -> None:
    client = connect(make_app(data_dir=tmp_path / "data"))
    assert client.get("/v1/stats").get_json()["aggregation"] == {"mode": "sync"}


def test_refused_stale_says_it_counts_since_this_process_started(
    make_app: AppFactory, connect: Connect, tmp_path: Path
) -> None:
    # A refusal changes no stored state, so the too-stale count lives in the
    # process: the answer says since when, and a restart starts it again.
    data = tmp_path / "data"
    before = time.time()
    app = async_app(make_app, data, buffer=1, concurrency=4, max_staleness=0)
    client = connect(app)
    a, b = (enrol(client)[1] for _ in range(2))
    base1 = join(client, a)["base_checkpoint"]
    join(client, b)
    assert upload(client, a, 1, constant_update(1, base1, 1.0)).status_code == 201
    assert settled(json_of(client), 1)["state"] == "closed"
    refused = upload(client, b, 1, constant_update(1, base1, 2.0))
    assert refused.get_json()["code"] == "too_stale"
    first = aggregation(client)
    assert first["refused_stale"] == 1
    assert before <= first["refused_stale_since"] <= time.time()

    shutdown(app)
    restarted = time.time()
    again = aggregation(connect(async_app(make_app, data, buffer=1, concurrency=4)))

    assert again["version"] == 2  # the store's numbers survive the restart
    assert again["refused_stale"] == 0
    assert again["refused_stale_since"] >= restarted > first["refused_stale_since"]
