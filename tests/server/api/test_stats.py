"""What the dashboard reads beside rounds and releases: the devices' own
metrics in a closed round, refused uploads by reason per round, devices
seen (``GET /v1/stats``). Through the test client and over real HTTP."""

from __future__ import annotations

import sqlite3
import time

import numpy as np
import pytest
from flask import Flask

from fedge.server.devices.counts import device_counts
from fedge.server.devices.metrics import MAX_NAMES, weighted_device_metrics
from fedge.server.http.context import context
from fedge.server.rounds.rejection_tally import RejectionTally
from fedge.wire.update_codec import Update, UpdateMeta, encode_update
from tests.server.conftest import Client
from tests.server.helpers import SHAPES, database_of, join, json_of, settled, upload


def update(round_id: int, base: str, num_examples: int, metrics: dict[str, float]) -> bytes:
    deltas = {name: np.full(shape, 0.5, np.float32) for name, shape in SHAPES.items()}
    meta = UpdateMeta(
        round_id=round_id, base_checkpoint=base, num_examples=num_examples, metrics=metrics
    )
    return encode_update(Update(meta=meta, deltas=deltas))


def enrol(client: Client, platform: str = "test") -> tuple[str, str]:
    response = client.post("/v1/devices", json={"platform": platform})
    assert response.status_code == 201
    body = response.get_json()
    return body["device_id"], body["token"]


def database(app: Flask) -> sqlite3.Connection:
    return database_of(app).connection()


def stored_rows(app: Flask) -> dict[str, int]:
    conn = database(app)
    tables = ("updates", "events", "rounds", "selections", "devices")
    return {t: int(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]) for t in tables}


# -- the devices' metrics in a closed round --------------------------------------


def test_device_metrics_are_weighted_means_over_the_devices_that_sent_them() -> None:
    reports = [
        (1.0, {"loss": 2.0, "accuracy": 0.5}),
        (3.0, {"loss": 1.0, "accuracy": 0.9}),
        (4.0, {"loss": 0.5}),  # no accuracy: not counted as 0
        (0.0, {"loss": 100.0}),  # no weight
        (2.0, {"loss": float("nan"), "accuracy": True}),  # neither is a number
    ]

    means = weighted_device_metrics(reports)

    # loss: (1*2 + 3*1 + 4*0.5) / 8 = 0.875; accuracy: (1*0.5 + 3*0.9) / 4 = 0.8
    assert means == pytest.approx({"device_loss": 0.875, "device_accuracy": 0.8})


def test_a_round_keeps_the_metrics_most_devices_reported() -> None:
    reports = [
        (1.0, {"loss": 1.0, **{f"junk{i:02d}": 1.0 for i in range(20)}}),
        (1.0, {"loss": 3.0}),
    ]

    means = weighted_device_metrics(reports)

    assert len(means) == MAX_NAMES
    assert means["device_loss"] == 2.0


def test_a_closed_round_holds_the_devices_weighted_metrics(client: Client) -> None:
    (_, token_a), (_, token_b) = enrol(client), enrol(client)
    task = join(client, token_a)
    join(client, token_b)
    base = task["base_checkpoint"]

    first = upload(client, token_a, 1, update(1, base, 1, {"loss": 2.0, "accuracy": 0.5}))
    second = upload(client, token_b, 1, update(1, base, 3, {"loss": 1.0, "accuracy": 0.9}))

    assert first.status_code == second.status_code == 201
    closed = settled(json_of(client), 1)
    assert closed["state"] == "closed"
    # (1 * 2.0 + 3 * 1.0) / 4 = 1.25; (1 * 0.5 + 3 * 0.9) / 4 = 0.8
    assert closed["metrics"]["device_loss"] == pytest.approx(1.25)
    assert closed["metrics"]["device_accuracy"] == pytest.approx(0.8)
    # The event the dashboard follows carries them too.
    events = client.get("/v1/events/poll?after=0&types=round").get_json()["events"]
    (closed_event,) = [e for e in events if e["data"]["state"] == "closed"]
    assert closed_event["data"]["metrics"]["device_accuracy"] == pytest.approx(0.8)


# -- refused uploads by reason, per round -----------------------------------------


def test_refusals_are_counted_per_round_by_reason_and_nothing_is_stored(
    app: Flask, client: Client
) -> None:
    (_, token), _ = enrol(client), enrol(client)
    base = join(client, token)["base_checkpoint"]
    before = stored_rows(app)

    malformed = upload(client, token, 1, b"not a safetensors file")
    wrong_round = upload(client, token, 1, update(2, base, 1, {"loss": 1.0}))
    made_up_round = upload(client, token, 77, update(77, base, 1, {"loss": 1.0}))
    second_malformed = upload(client, token, 1, b"junk again")

    assert [r.status_code for r in (malformed, wrong_round, made_up_round)] == [400, 400, 404]
    codes = [r.get_json()["code"] for r in (malformed, wrong_round, made_up_round)]
    assert codes == ["malformed_update", "wrong_round", "unknown_round"]
    assert second_malformed.status_code == 400
    stats = client.get("/v1/stats").get_json()
    # Round 77 does not exist: its refusal counts against the round in progress.
    assert stats["rejections"] == [
        {"round_id": 1, "reasons": {"malformed_update": 2, "unknown_round": 1, "wrong_round": 1}}
    ]
    assert stored_rows(app) == before


def test_a_later_round_gets_its_own_tally(client: Client) -> None:
    (_, token_a), (_, token_b) = enrol(client), enrol(client)
    base = join(client, token_a)["base_checkpoint"]
    join(client, token_b)
    assert upload(client, token_a, 1, b"junk").status_code == 400
    assert upload(client, token_a, 1, update(1, base, 1, {"loss": 1.0})).status_code == 201
    assert upload(client, token_b, 1, update(1, base, 2, {"loss": 1.0})).status_code == 201
    assert settled(json_of(client), 1)["state"] == "closed"

    late = upload(client, token_a, 1, update(1, base, 3, {"loss": 0.5}))  # a second one
    nowhere = upload(client, token_a, 5, b"junk")  # no round 5 (round 2 is in progress)

    assert late.get_json()["code"] == "duplicate_update"
    assert nowhere.get_json()["code"] == "unknown_round"
    rejections = client.get("/v1/stats").get_json()["rejections"]
    assert rejections == [
        {"round_id": 2, "reasons": {"unknown_round": 1}},
        {"round_id": 1, "reasons": {"duplicate_update": 1, "malformed_update": 1}},
    ]


def test_the_tally_keeps_only_the_most_recent_rounds() -> None:
    tally = RejectionTally(keep=2)

    for round_id in (1, 2, 3, 1, 3):
        tally.record(round_id, "wrong_round")

    # Round 1 fell out when round 3 came; a late refusal for it stays out.
    assert [(r.round_id, r.reasons) for r in tally.recent()] == [
        (3, {"wrong_round": 2}),
        (2, {"wrong_round": 1}),
    ]
    tally.record(4, "non_finite")
    assert [r.round_id for r in tally.recent()] == [4, 3]


# -- devices seen ------------------------------------------------------------------


def test_devices_seen_by_time_and_platform(app: Flask, client: Client) -> None:
    ids = [enrol(client, platform)[0] for platform in ("android", "android", "web", "")]
    now = time.time()
    conn = database(app)
    with conn:  # as if two devices were last heard from 2 hours and 2 days ago
        conn.execute("UPDATE devices SET last_seen = ? WHERE id = ?", (now - 2 * 3600, ids[0]))
        conn.execute("UPDATE devices SET last_seen = ? WHERE id = ?", (now - 2 * 86400, ids[2]))

    devices = client.get("/v1/stats").get_json()["devices"]

    assert devices == {
        "enrolled": 4,
        "seen_1h": 2,
        "seen_24h": 3,
        "by_platform": {"android": 2, "unknown": 1, "web": 1},
    }
    assert list(devices["by_platform"]) == ["android", "unknown", "web"]


def test_rare_platforms_are_summed_as_other(app: Flask, client: Client) -> None:
    for index in range(15):  # 13 platforms: 3 x common, 12 rare
        enrol(client, "common" if index < 3 else f"rare{index:02d}")

    with app.app_context(), context().store.reading() as tx:
        counts = device_counts(tx.devices, time.time())

    assert counts.enrolled == 15 and counts.seen_1h == 15
    assert len(counts.by_platform) == 12
    assert counts.by_platform["common"] == 3
    # 11 named (common and the first 10 rare ones), the last 2 rare ones summed.
    assert counts.by_platform["other"] == 2
    assert sum(counts.by_platform.values()) == 15


def test_stats_has_no_device_ids(client: Client) -> None:
    device_id, token = enrol(client, "web")
    upload(client, token, 1, b"junk")

    body = client.get("/v1/stats").get_data(as_text=True)

    assert device_id not in body and token not in body
