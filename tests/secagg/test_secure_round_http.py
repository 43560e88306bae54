"""Secure rounds over real HTTP: a real ``fedge serve --secure-aggregation``
(the reference digits CNN) and Python devices, each on its own thread.

The deltas are synthetic (what the server sees does not depend on how the
devices trained), some values beyond the clipping range.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import requests

from fedge.client_sim.device.client import FedgeClient
from fedge.client_sim.device.secure_round import SecureRoundError, run_secure_round
from fedge.client_sim.device.transport import HttpTransport
from fedge.wire.update_codec import Weights
from tests.helpers.live_server import LiveServer, running
from tests.server.helpers import settled

DEVICES = 5
CLIP = 0.05
STAGE_S = 5.0  # room for a loaded machine: a late device would count as dropped


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("secure")
    config = tmp / "server.toml"
    config.write_text("tick_s = 0.05\n[rounds]\nover_selection = 1.0\n")
    args = [
        "--config",
        str(config),
        "--per-round",
        str(DEVICES),
        "--rounds-min",
        "3",
        "--deadline",
        "600",
        "--secure-aggregation",
        "--secure-clip",
        str(CLIP),
        "--secure-dropout",
        "0.3",
        "--secure-stage-s",
        str(STAGE_S),
    ]
    with running(tmp / "data", args, tmp / "server.log") as live:
        live.data_dir = tmp / "data"  # type: ignore[attr-defined]
        yield live


@pytest.fixture(scope="module")
def clients(server: LiveServer) -> Iterator[list[FedgeClient]]:
    """As many devices as seats: each takes part in every round (no
    fair-sampler wait changes who is in a round)."""
    clients = [FedgeClient(HttpTransport(server.url)) for _ in range(DEVICES)]
    for client in clients:
        client.enrol()
    yield clients
    for client in clients:
        client.transport.close()


def play_round(
    server: LiveServer, clients: list[FedgeClient], stop_after: dict[int, str]
) -> tuple[dict[str, Any], Weights, list[Weights], dict[int, Exception]]:
    """A round of the devices; device i stops after stage ``stop_after[i]``.
    Returns the ended round, its base weights, each device's deltas, errors."""
    answers = [c.task(idle=True, charging=True, unmetered=True) for c in clients]
    tasks = [a["task"] for a in answers]
    assert all(t is not None and "secure_aggregation" in t for t in tasks), answers
    round_id = tasks[0]["round_id"]
    base = clients[0].checkpoint(tasks[0]["base_checkpoint"]).weights
    rng = np.random.default_rng(round_id)
    names = tasks[0]["secure_aggregation"]["weights"]
    deltas = [
        {n: rng.uniform(-2 * CLIP, 2 * CLIP, base[n].shape).astype(np.float32) for n in names}
        for _ in clients
    ]
    errors: dict[int, Exception] = {}

    def device(i: int) -> None:
        try:
            run_secure_round(clients[i], tasks[i], deltas[i], stop_after=stop_after.get(i))
        except SecureRoundError as exc:
            errors[i] = exc

    threads = [threading.Thread(target=device, args=(i,)) for i in range(DEVICES)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    record = settled(lambda p: requests.get(server.url + p, timeout=30).json(), round_id)
    return record, base, deltas, errors


def result_weights(server: LiveServer, record: dict[str, Any]) -> Weights:
    client = FedgeClient(HttpTransport(server.url))
    client.enrol()
    return client.checkpoint(record["result_checkpoint"]).weights


def expected_fedavg(base: Weights, deltas: list[Weights]) -> Weights:
    """Plain FedAvg (server_lr 1, equal weights) of the clipped deltas."""
    return {
        n: base[n] + np.mean([np.clip(d[n].astype(np.float64), -CLIP, CLIP) for d in deltas], 0)
        for n in deltas[0]
    }


def assert_fedavg_within_quantisation(got: Weights, want: Weights, record: dict[str, Any]) -> None:
    params = record["metrics"]["secure_params"]
    step = 2 * params["clip"] / ((1 << params["bits"]) - 1)
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, rtol=0, atol=step + 1e-6)


def test_devices_complete_a_secure_round_and_the_model_is_plain_fedavg(
    server: LiveServer, clients: list[FedgeClient]
) -> None:
    record, base, deltas, errors = play_round(server, clients, {})

    assert errors == {}
    assert record["state"] == "closed", record
    metrics = record["metrics"]
    assert metrics["secure_aggregation"] is True and metrics["updates"] == DEVICES
    assert record["updates"] == DEVICES  # no update stored: the unmasked sum's count
    # Nothing of one device's update is on disk: no update file at all.
    stored = [p for p in server.data_dir.rglob("*") if p.is_file() and "updates" in p.parts]  # type: ignore[attr-defined]
    assert stored == []
    assert metrics["secure_uploaded"] == DEVICES and metrics["secure_dropped_upload"] == 0
    assert metrics["secure_advertised"] == metrics["secure_unmask_answers"] == DEVICES
    assert_fedavg_within_quantisation(
        result_weights(server, record), expected_fedavg(base, deltas), record
    )


def test_a_device_dropped_after_sharing_lets_the_round_close(
    server: LiveServer, clients: list[FedgeClient]
) -> None:
    record, base, deltas, errors = play_round(server, clients, {2: "shares"})

    assert errors == {}
    assert record["state"] == "closed", record
    assert record["metrics"]["secure_dropped_upload"] == 1
    assert record["metrics"]["updates"] == DEVICES - 1
    survivors = [d for i, d in enumerate(deltas) if i != 2]
    assert_fedavg_within_quantisation(
        result_weights(server, record), expected_fedavg(base, survivors), record
    )


def test_beyond_the_threshold_the_round_fails_and_the_model_stays(
    server: LiveServer, clients: list[FedgeClient]
) -> None:
    # 5 devices: 4 neighbours each, threshold 3; three vanish after uploading.
    record, _, _, _ = play_round(server, clients, {0: "masked", 1: "masked", 2: "masked"})

    assert record["state"] == "failed", record
    assert "secure aggregation failed" in record["metrics"]["reason"]
    assert record.get("result_checkpoint") is None
    current = requests.get(server.url + "/v1/rounds/current", timeout=30).json()
    assert current["base_checkpoint"] == record["base_checkpoint"]


def test_a_plain_upload_to_a_secure_round_is_refused(
    server: LiveServer, clients: list[FedgeClient]
) -> None:
    client = clients[0]
    task = client.task(idle=True, charging=True, unmetered=True)["task"]
    reply = requests.post(
        f"{server.url}/v1/rounds/{task['round_id']}/updates",
        data=b"not an update",
        headers={
            "Authorization": f"Bearer {client.token}",
            "Content-Type": "application/octet-stream",
        },
        timeout=30,
    )
    assert reply.status_code == 409 and reply.json()["code"] == "secure_round"


def test_hostile_requests_get_clear_refusals_and_change_nothing(server: LiveServer) -> None:
    stranger = FedgeClient(HttpTransport(server.url))
    stranger.enrol()  # enrolled, but never asked for a task: no seat
    round_id = requests.get(server.url + "/v1/rounds/current", timeout=30).json()["round_id"]
    base = f"{server.url}/v1/rounds/{round_id}/secagg"
    auth = {"Authorization": f"Bearer {stranger.token}"}
    key = "A" * 43 + "="
    cases: list[tuple[str, str, dict[str, Any], int, str]] = [
        ("post", "/keys", {"json": {"encryption_key": key, "mask_key": key}}, 409, "not_selected"),
        ("post", "/keys", {"json": {"encryption_key": key}}, 400, "bad_secagg_message"),
        (
            "post",
            "/keys",
            {"data": b"{]", "headers": {"Content-Type": "application/json"}},
            400,
            "bad_json",
        ),
        ("post", "/masked", {"json": {"vector": "AAAA"}}, 400, "bad_content_type"),
        ("get", "/directory", {}, 409, "not_selected"),
        (
            "post",
            "/unmask",
            {"json": {"seed_shares": {}, "key_shares": [1]}},
            400,
            "bad_secagg_message",
        ),
    ]
    before = requests.get(base, timeout=30).json()

    for method, path, kwargs, status, code in cases:
        headers = {**auth, **kwargs.pop("headers", {})}
        reply = requests.request(method, base + path, headers=headers, timeout=30, **kwargs)
        assert (reply.status_code, reply.json()["code"]) == (status, code), (path, reply.text)
    anonymous = requests.post(base + "/keys", json={}, timeout=30)
    other_round = requests.get(
        f"{server.url}/v1/rounds/{round_id + 5}/secagg/directory", headers=auth, timeout=30
    )

    assert anonymous.status_code == 401
    assert (other_round.status_code, other_round.json()["code"]) == (409, "round_not_open")
    assert requests.get(base, timeout=30).json() == before
