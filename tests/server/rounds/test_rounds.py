"""Federated rounds through the Flask test client: numbers checkable by hand.

The tiny model starts at zero, so a closed round's checkpoint is exactly
the aggregated delta.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flask import Flask

from fedge.server.http.app import shutdown
from fedge.server.http.context import context
from fedge.wire.update_codec import decode_checkpoint
from tests.server.conftest import AppFactory, Client, Connect, on_each_store
from tests.server.helpers import (
    OCTET,
    auth,
    constant_update,
    join,
    json_of,
    rows_of,
    settled,
    upload,
)

# The rounds' contract over HTTP (receipts, hostile uploads, restarts) holds on each store.
app_database = pytest.fixture(on_each_store, name="app_database")


def enrol(client: Client) -> tuple[str, str]:
    response = client.post("/v1/devices", json={"platform": "test"})
    assert response.status_code == 201
    body = response.get_json()
    return body["device_id"], body["token"]


def checkpoint_weights(client: Client, token: str, checkpoint: str) -> dict[str, Any]:
    response = client.get(f"/v1/checkpoints/{checkpoint}", headers=auth(token))
    data = response.get_data()
    response.close()
    assert response.status_code == 200
    return decode_checkpoint(data).weights


def stored_updates(app: Flask) -> int:
    ((count,),) = rows_of(app, "SELECT COUNT(*) FROM updates")
    return int(count)


def context_of(app: Flask) -> Any:
    with app.app_context():
        return context()


def test_a_full_round_is_the_weighted_mean_of_the_deltas(client: Client) -> None:
    (_, token_a), (_, token_b) = enrol(client), enrol(client)
    task_a, task_b = join(client, token_a), join(client, token_b)
    assert task_a["round_id"] == task_b["round_id"] == 1
    base = task_a["base_checkpoint"]
    np.testing.assert_array_equal(
        checkpoint_weights(client, token_a, base)["dense/bias"], [0.0, 0.0]
    )

    first = upload(client, token_a, 1, constant_update(1, base, 1.0, num_examples=1))
    second = upload(client, token_b, 1, constant_update(1, base, 4.0, num_examples=3))

    assert first.status_code == 201 and second.status_code == 201
    round_one = settled(json_of(client), 1)
    assert round_one["state"] == "closed"
    assert round_one["metrics"]["updates"] == 2
    assert round_one["metrics"]["examples"] == 4
    weights = checkpoint_weights(client, token_a, round_one["result_checkpoint"])
    # (1 * 1.0 + 3 * 4.0) / 4 = 3.25
    np.testing.assert_allclose(weights["dense/kernel"], np.full((2, 2), 3.25))
    assert join(client, token_a)["base_checkpoint"] == round_one["result_checkpoint"]


def test_a_retry_returns_the_same_receipt_and_a_different_update_is_refused(
    app: Flask, client: Client
) -> None:
    _, token = enrol(client)
    task = join(client, token)
    body = constant_update(1, task["base_checkpoint"], 1.0)

    first = upload(client, token, 1, body)
    retry = upload(client, token, 1, body)
    other = upload(client, token, 1, constant_update(1, task["base_checkpoint"], 2.0))

    assert (first.status_code, retry.status_code) == (201, 200)
    assert retry.get_json() == first.get_json()
    assert other.status_code == 409 and other.get_json()["code"] == "duplicate_update"
    assert stored_updates(app) == 1


@pytest.mark.parametrize(
    ("make_body", "status", "code"),
    [
        (lambda base: b"not safetensors at all", 400, "malformed_update"),
        (lambda base: constant_update(7, base, 1.0), 400, "wrong_round"),
        (lambda base: constant_update(1, "0" * 64, 1.0), 409, "stale_base"),
        (
            lambda base: constant_update(
                1, base, 1.0, overrides={"dense/bias": np.zeros(3, np.float32)}
            ),
            422,
            "wrong_weights",
        ),
        (
            lambda base: constant_update(
                1, base, 1.0, overrides={"dense/bias": np.zeros(2, np.float64)}
            ),
            422,
            "wrong_weights",
        ),
        (lambda base: constant_update(1, base, float("nan")), 422, "non_finite"),
        (lambda base: constant_update(1, base, 1.0, num_examples=0), 422, "bad_num_examples"),
        (lambda base: constant_update(1, base, 100.0), 422, "norm_too_large"),
    ],
)
def test_invalid_updates_are_rejected_before_anything_is_stored(
    make_app: AppFactory, make_body: Any, status: int, code: str, connect: Connect
) -> None:
    # norm_too_large: the "reject" policy (the default clips).
    app = make_app(max_update_norm=10.0, norm_policy="reject")
    client = connect(app)
    _, token = enrol(client)
    task = join(client, token)

    response = upload(client, token, 1, make_body(task["base_checkpoint"]))

    assert response.status_code == status
    assert response.get_json()["code"] == code
    assert response.get_json()["message"]
    assert stored_updates(app) == 0
    metrics = client.get("/metrics").get_data(as_text=True)
    assert f'fedge_updates_rejected_total{{reason="{code}"}} 1' in metrics


def test_clip_policy_scales_an_update_down_to_the_bound(
    make_app: AppFactory, connect: Connect
) -> None:
    app = make_app(max_update_norm=1.0, norm_policy="clip", rounds={"target_participants": 1})
    client = connect(app)
    _, token = enrol(client)
    task = join(client, token)

    receipt = upload(client, token, 1, constant_update(1, task["base_checkpoint"], 3.0))

    assert receipt.status_code == 201
    assert receipt.get_json()["clipped"] is True
    assert receipt.get_json()["norm"] == pytest.approx(3.0 * np.sqrt(6))
    result = settled(json_of(client), 1)["result_checkpoint"]
    weights = checkpoint_weights(client, token, result)
    norm = np.sqrt(sum(float((w**2).sum()) for w in weights.values()))
    assert norm == pytest.approx(1.0, rel=1e-5)


def test_a_body_over_the_limit_gets_413(make_app: AppFactory, connect: Connect) -> None:
    app = make_app(max_update_bytes=1024)
    client = connect(app)
    _, token = enrol(client)
    join(client, token)

    response = upload(client, token, 1, b"\0" * 4096)

    assert response.status_code == 413
    assert response.get_json()["code"] == "payload_too_large"
    assert stored_updates(app) == 0


def test_access_rules(app: Flask, client: Client) -> None:
    device_a, token_a = enrol(client)
    device_b, token_b = enrol(client)
    task = join(client, token_a)
    body = constant_update(1, task["base_checkpoint"], 1.0)

    no_token = client.post("/v1/rounds/1/updates", data=body, content_type=OCTET)
    bad_token = upload(client, "forged", 1, body)
    not_selected = upload(client, token_b, 1, body)
    other_state = client.get(f"/v1/devices/{device_a}", headers=auth(token_b))
    other_heartbeat = client.post(
        f"/v1/devices/{device_a}/heartbeat", json={}, headers=auth(token_b)
    )
    own_state = client.get(f"/v1/devices/{device_b}", headers=auth(token_b))

    assert no_token.status_code == 401 and bad_token.status_code == 401
    assert not_selected.status_code == 403
    assert not_selected.get_json()["code"] == "not_selected"
    assert other_state.status_code == 403 and other_heartbeat.status_code == 403
    assert own_state.status_code == 200 and own_state.get_json()["device_id"] == device_b
    assert stored_updates(app) == 0


def test_enrolment_key_is_enforced(make_app: AppFactory, connect: Connect) -> None:
    client = connect(make_app(enrolment_key="let-me-in"))

    refused = client.post("/v1/devices", json={"enrolment_key": "wrong"})
    accepted = client.post("/v1/devices", json={"enrolment_key": "let-me-in"})

    assert refused.status_code == 403 and refused.get_json()["code"] == "bad_enrolment_key"
    assert accepted.status_code == 201


def test_conditions_gate_selection(make_app: AppFactory, connect: Connect) -> None:
    client = connect(make_app(rounds={"require_charging": True}))
    _, token = enrol(client)

    busy = client.post("/v1/tasks", json={"idle": True, "charging": False}, headers=auth(token))
    ready = client.post("/v1/tasks", json={"idle": True, "charging": True}, headers=auth(token))

    assert busy.get_json() == {"task": None, "reason": "conditions", "retry_after_s": 30.0}
    assert ready.get_json()["task"]["round_id"] == 1


def test_over_selection_caps_the_round(make_app: AppFactory, connect: Connect) -> None:
    client = connect(make_app(rounds={"target_participants": 2, "over_selection": 1.5}))
    tokens = [enrol(client)[1] for _ in range(4)]

    answers = [client.post("/v1/tasks", json={}, headers=auth(t)).get_json() for t in tokens]

    assert [a["task"] is not None for a in answers] == [True, True, True, False]
    assert answers[3]["reason"] == "round_full"


def test_deadline_with_quorum_closes_and_without_quorum_abandons(
    make_app: AppFactory, connect: Connect
) -> None:
    app = make_app(rounds={"target_participants": 3, "min_participants": 2, "deadline_s": 5})
    client = connect(app)
    tokens = [enrol(client)[1] for _ in range(2)]
    task = join(client, tokens[0])
    join(client, tokens[1])
    upload(client, tokens[0], 1, constant_update(1, task["base_checkpoint"], 2.0))
    coordinator = context_of(app).coordinator

    coordinator.drive(now=task["deadline_at"] + 1)

    assert client.get("/v1/rounds/1").get_json()["state"] == "abandoned"
    late = upload(client, tokens[1], 1, constant_update(1, task["base_checkpoint"], 2.0))
    assert late.status_code == 409 and late.get_json()["code"] == "round_closed"

    second = join(client, tokens[0])
    join(client, tokens[1])
    assert second["round_id"] == 2
    for token, value in zip(tokens, (2.0, 3.0), strict=True):
        response = upload(client, token, 2, constant_update(2, second["base_checkpoint"], value))
        assert response.status_code == 201
    coordinator.drive(now=second["deadline_at"] + 1)
    round_two = client.get("/v1/rounds/2").get_json()
    assert round_two["state"] == "closed" and round_two["metrics"]["updates"] == 2


def test_a_restarted_server_resumes_the_open_round(make_app: AppFactory, connect: Connect) -> None:
    first = make_app(rounds={"target_participants": 3})
    client = connect(first)
    tokens = [enrol(client)[1] for _ in range(3)]
    task = join(client, tokens[0])
    join(client, tokens[1])
    join(client, tokens[2])
    upload(client, tokens[0], 1, constant_update(1, task["base_checkpoint"], 1.0))
    upload(client, tokens[1], 1, constant_update(1, task["base_checkpoint"], 2.0))

    shutdown(first)
    restarted = connect(make_app(rounds={"target_participants": 3}))
    upload(restarted, tokens[2], 1, constant_update(1, task["base_checkpoint"], 6.0))

    round_one = settled(json_of(restarted), 1)
    assert round_one["state"] == "closed" and round_one["metrics"]["updates"] == 3
    weights = checkpoint_weights(restarted, tokens[0], round_one["result_checkpoint"])
    np.testing.assert_allclose(weights["dense/bias"], [3.0, 3.0])  # (1 + 2 + 6) / 3


def test_fair_sampler_keeps_participation_even(make_app: AppFactory, connect: Connect) -> None:
    app = make_app(rounds={"target_participants": 2, "over_selection": 1.0})
    client = connect(app)
    tokens = [enrol(client)[1] for _ in range(4)]

    for round_id in range(1, 7):
        joined = []
        for token in tokens:  # the same devices always ask first
            answer = client.post("/v1/tasks", json={}, headers=auth(token)).get_json()
            if answer["task"] is not None:
                joined.append((token, answer["task"]))
        assert len(joined) == 2
        for value, (token, task) in enumerate(joined, start=1):
            body = constant_update(round_id, task["base_checkpoint"], float(value))
            assert upload(client, token, round_id, body).status_code == 201
        assert settled(json_of(client), round_id)["state"] == "closed"

    counts = [participations(app, t) for t in tokens]
    assert max(counts) - min(counts) <= 1
    assert sum(counts) == 12


def participations(app: Flask, token: str) -> int:
    from fedge.server.storage.devices import hash_token

    ((count,),) = rows_of(
        app, "SELECT participations FROM devices WHERE token_hash = ?", (hash_token(token),)
    )
    return int(count)


def _three_device_round(app: Flask, connect: Connect, values: tuple[float, ...]) -> dict[str, Any]:
    client = connect(app)
    tokens = [enrol(client)[1] for _ in values]
    tasks = [join(client, t) for t in tokens]
    for token, value in zip(tokens, values, strict=True):
        response = upload(
            client,
            token,
            1,
            constant_update(1, tasks[0]["base_checkpoint"], value, num_examples=10),
        )
        assert response.status_code == 201
    round_one: dict[str, Any] = settled(json_of(client), 1)
    round_one["weights"] = checkpoint_weights(client, tokens[0], round_one["result_checkpoint"])
    return round_one


def test_median_strategy_reads_the_stored_updates(make_app: AppFactory, connect: Connect) -> None:
    app = make_app(strategy="median", max_update_norm=1000.0, rounds={"target_participants": 3})

    round_one = _three_device_round(app, connect, (1.0, 2.0, 60.0))

    assert round_one["metrics"]["strategy"] == "median"
    np.testing.assert_allclose(round_one["weights"]["dense/bias"], [2.0, 2.0])


def test_central_dp_clips_adds_noise_and_reports_epsilon(
    make_app: AppFactory, connect: Connect
) -> None:
    app = make_app(dp_clip_norm=1.0, dp_noise_multiplier=1.0, rounds={"target_participants": 3})

    round_one = _three_device_round(app, connect, (1.0, 2.0, 6.0))

    metrics = round_one["metrics"]
    assert metrics["strategy"] == "fedavg+dp"
    assert 0 < metrics["dp_epsilon"] < float("inf")
    assert metrics["dp_delta"] == 1e-5
    # Each update (norm >= 2.4) is clipped to norm 1 in the direction of all-ones:
    # the mean is 1/sqrt(6) per element, plus noise of std 1 * 1 / 3.
    values = np.concatenate([w.ravel() for w in round_one["weights"].values()])
    assert not np.allclose(values, 1 / np.sqrt(6), atol=1e-6)
    assert abs(values.mean() - 1 / np.sqrt(6)) < 4 * (1 / 3) / np.sqrt(6)


def test_only_the_admin_ends_a_round(app: Flask, client: Client) -> None:
    _, token = enrol(client)
    task = join(client, token)
    upload(client, token, 1, constant_update(1, task["base_checkpoint"], 5.0))

    as_device = client.post("/v1/admin/rounds/current/end", headers=auth(token))
    as_nobody = client.post("/v1/admin/rounds/current/end")
    as_admin = client.post("/v1/admin/rounds/current/end", headers=auth("admin-secret"))
    again = client.post("/v1/admin/rounds/current/end", headers=auth("admin-secret"))

    assert as_device.status_code == 403 and as_device.get_json()["code"] == "not_admin"
    assert as_nobody.status_code == 401
    assert as_admin.status_code == 200
    assert as_admin.get_json()["state"] == "closed"  # one update meets the quorum of one
    # The next round opened at once; with no update it ends abandoned.
    assert again.status_code == 200
    assert (again.get_json()["round_id"], again.get_json()["state"]) == (2, "abandoned")


DP = {"dp_clip_norm": 1.0, "dp_noise_multiplier": 1.0, "rounds": {"target_participants": 3}}


def test_central_dp_noise_cannot_be_regenerated(
    make_app: AppFactory, connect: Connect, tmp_path: Path
) -> None:
    """Two servers with the same settings and the same updates add different
    noise (it was seeded from the config's seed and the round), unless the
    test-only seed is set, which the round's metrics then say."""
    first = _three_device_round(make_app(**DP), connect, (1.0, 2.0, 6.0))
    second = _three_device_round(make_app(data_dir=tmp_path / "b", **DP), connect, (1.0, 2.0, 6.0))
    seeded = [
        _three_device_round(
            make_app(data_dir=tmp_path / name, dp_insecure_test_seed=7, **DP),
            connect,
            (1.0, 2.0, 6.0),
        )
        for name in ("c", "d")
    ]

    assert not np.array_equal(first["weights"]["dense/kernel"], second["weights"]["dense/kernel"])
    assert first["metrics"]["dp_noise_seeded"] is False
    np.testing.assert_array_equal(
        seeded[0]["weights"]["dense/kernel"], seeded[1]["weights"]["dense/kernel"]
    )
    assert seeded[0]["metrics"]["dp_noise_seeded"] is True


def test_dummy_enrolments_do_not_lower_the_reported_epsilon(
    make_app: AppFactory, connect: Connect, tmp_path: Path
) -> None:
    few = _three_device_round(make_app(**DP), connect, (1.0, 2.0, 6.0))
    crowded_app = make_app(data_dir=tmp_path / "crowded", **DP)
    crowded_client = connect(crowded_app)
    for _ in range(20):
        enrol(crowded_client)

    crowded = _three_device_round(crowded_app, connect, (1.0, 2.0, 6.0))

    assert crowded["metrics"]["dp_epsilon"] == few["metrics"]["dp_epsilon"]
    assert few["metrics"]["dp_sample_rate"] == 1.0
    assert "no amplification by sampling" in few["metrics"]["dp_accounting"]


def test_update_files_of_ended_rounds_are_deleted_and_receipts_stay(
    make_app: AppFactory, connect: Connect
) -> None:
    app = make_app(update_retention_rounds=0, rounds={"target_participants": 1})
    client = connect(app)
    _, token = enrol(client)
    task = join(client, token)
    body = constant_update(1, task["base_checkpoint"], 1.0)
    first = upload(client, token, 1, body)
    assert settled(json_of(client), 1)["state"] == "closed"

    retry = upload(client, token, 1, body)

    updates = context_of(app).config.data_dir / "updates"
    # The round driver deletes the files right after it commits the close,
    # which the API already shows: give it a moment rather than race it.
    deadline = time.monotonic() + 10.0
    while [p for p in updates.rglob("*") if p.is_file()] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p for p in updates.rglob("*") if p.is_file()] == []
    assert retry.status_code == 200 and retry.get_json() == first.get_json()


def test_a_state_change_is_a_compare_and_set(make_app: AppFactory) -> None:
    from fedge.server.storage import rounds as rs

    app = make_app(tick_s=3600.0)  # the round driver stays out of the way

    with context_of(app).store.transaction() as tx:
        tx.rounds.transition(1, "open", "closing")

    with pytest.raises(rs.StateChanged), context_of(app).store.transaction() as tx:
        tx.rounds.transition(1, "open", "abandoned")

    assert rows_of(app, "SELECT state FROM rounds WHERE id = 1")[0][0] == "closing"


def test_a_round_ends_and_the_next_opens_in_one_transaction(
    make_app: AppFactory, connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the server is healthy there is always a round in progress:
    ``/v1/rounds/current`` never answers 404 between two rounds (a client
    that asked in that gap used to fail)."""
    from contextlib import contextmanager

    app = make_app(tick_s=3600.0, rounds={"target_participants": 2, "min_participants": 2})
    client = connect(app)
    coordinator = context_of(app).coordinator
    gaps: list[int] = []
    kind = type(context_of(app).store)  # either store
    original = kind.transaction

    @contextmanager
    def watched(self: Any, durable: bool = True) -> Any:
        with original(self, durable) as tx:
            yield tx
        with self.reading() as after:
            if after.rounds.active() is None:
                gaps.append(1)

    monkeypatch.setattr(kind, "transaction", watched)

    tokens = [enrol(client)[1] for _ in range(2)]
    task = join(client, tokens[0])
    join(client, tokens[1])
    coordinator.drive(now=task["deadline_at"] + 1)  # no quorum: abandoned
    assert client.get("/v1/rounds/1").get_json()["state"] == "abandoned"
    second = join(client, tokens[0])
    join(client, tokens[1])
    for token, value in zip(tokens, (2.0, 3.0), strict=True):
        upload(client, token, 2, constant_update(2, second["base_checkpoint"], value))
    coordinator.drive()  # target reached: closed
    assert client.get("/v1/rounds/2").get_json()["state"] == "closed"

    assert client.get("/v1/rounds/current").get_json()["round_id"] == 3
    assert gaps == []
