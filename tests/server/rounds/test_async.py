"""Asynchronous buffered aggregation (FedBuff) through the HTTP routes, with
numbers checkable by hand: the tiny model starts at zero, so a version's
checkpoint after one step is exactly the aggregated delta.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from fedge.server.rounds.buffered.staleness import StalenessPolicy, staleness_factor
from tests.server.conftest import AppFactory, Connect
from tests.server.helpers import auth, constant_update, join, json_of, settled, upload
from tests.server.rounds.test_rounds import checkpoint_weights, enrol, stored_updates

# A fixed norm bound far above the test's deltas: nothing is clipped.
NO_CLIP = {"max_update_norm": 1e6}


def async_app(make_app: AppFactory, data_dir: Path, **aggregation: Any) -> Any:
    return make_app(
        data_dir=data_dir,
        aggregation={"mode": "async", **aggregation},
        **NO_CLIP,
    )


def step_result(client: Any, token: str, version: int) -> npt.NDArray[np.float64]:
    """The kernel of the checkpoint that the step closing ``version`` made."""
    record = settled(json_of(client), version)
    assert record["state"] == "closed", record
    weights = checkpoint_weights(client, token, record["result_checkpoint"])
    return np.asarray(weights["dense/kernel"], np.float64)


@pytest.mark.parametrize("strategy", ["fedavg", "fedavgm"])
def test_one_async_step_with_no_staleness_equals_one_synchronous_round(
    make_app: AppFactory, connect: Connect, tmp_path: Path, strategy: str
) -> None:
    values = [(0.5, 3), (-2.0, 1), (7.25, 5)]  # (delta, examples) of three devices
    results = []
    for mode in ("sync", "async"):
        app = make_app(
            data_dir=tmp_path / mode,
            strategy=strategy,
            rounds={"target_participants": 3},
            aggregation={"mode": mode, "buffer": 3, "concurrency": 3},
            **NO_CLIP,
        )
        client = connect(app)
        tokens = [enrol(client)[1] for _ in values]
        tasks = [join(client, token) for token in tokens]
        assert {t["round_id"] for t in tasks} == {1}
        for token, task, (value, examples) in zip(tokens, tasks, values, strict=True):
            body = constant_update(1, task["base_checkpoint"], value, num_examples=examples)
            assert upload(client, token, 1, body).status_code == 201
        results.append(step_result(client, tokens[0], 1))
    np.testing.assert_allclose(results[1], results[0], rtol=0, atol=1e-6)
    if strategy == "fedavg":  # (0.5*3 - 2*1 + 7.25*5) / 9
        np.testing.assert_allclose(results[1], np.full((2, 2), 35.75 / 9), atol=1e-6)


def test_staleness_factors_by_hand() -> None:
    assert staleness_factor("sqrt", 0) == 1.0
    assert staleness_factor("sqrt", 3) == 0.5
    assert staleness_factor("constant", 7) == 1.0
    assert [staleness_factor("hinge", s, 2) for s in range(5)] == [1, 1, 1, 0.5, 1 / 3]
    policy = StalenessPolicy("sqrt", max_staleness=2, hinge_after=0)
    assert policy.staleness(4, 6) == 2
    with pytest.raises(Exception, match="3 versions") as refused:
        policy.staleness(3, 6)
    assert getattr(refused.value, "code", None) == "too_stale"
    with pytest.raises(Exception) as future:
        policy.staleness(7, 6)
    assert getattr(future.value, "code", None) == "unknown_version"


def test_staleness_weights_and_the_refusal_bound_on_a_sequence_of_uploads(
    make_app: AppFactory, connect: Connect, tmp_path: Path
) -> None:
    app = async_app(make_app, tmp_path / "data", buffer=2, concurrency=5, max_staleness=1)
    client = connect(app)
    tokens = [enrol(client)[1] for _ in range(5)]
    a, b, c, d, e = tokens
    tasks = {t: join(client, t) for t in (a, b, c, d)}
    assert {task["round_id"] for task in tasks.values()} == {1}
    base1 = tasks[a]["base_checkpoint"]

    # Version 1's buffer: A (1.0) and B (3.0), both fresh -> version 2 is their mean.
    assert upload(client, a, 1, constant_update(1, base1, 1.0)).status_code == 201
    assert upload(client, b, 1, constant_update(1, base1, 3.0)).status_code == 201
    np.testing.assert_allclose(step_result(client, a, 1), np.full((2, 2), 2.0), atol=1e-6)

    # Version 2's buffer: C trained on version 1 (staleness 1, weight 1/sqrt(2)),
    # E on version 2 (staleness 0, weight 1).
    task_e = join(client, e)
    assert task_e["round_id"] == 2
    late = upload(client, c, 1, constant_update(1, base1, 10.0))
    assert late.status_code == 201, late.get_json()
    assert late.get_json()["round_id"] == 2  # its receipt names the buffer it went to
    fresh = constant_update(2, task_e["base_checkpoint"], 4.0)
    assert upload(client, e, 2, fresh).status_code == 201
    w = 1 / math.sqrt(2)
    expected = 2.0 + (w * 10.0 + 1.0 * 4.0) / (w + 1.0)
    np.testing.assert_allclose(step_result(client, a, 2), np.full((2, 2), expected), atol=1e-6)
    version3 = client.get("/v1/rounds/2").get_json()
    assert version3["metrics"]["mean_staleness"] == 0.5
    assert version3["metrics"]["staleness_histogram"] == {"0": 1, "1": 1}

    # D still holds its task on version 1: 2 versions old now, past the bound.
    before = stored_updates(app)
    files = sorted((tmp_path / "data" / "updates").rglob("*"))
    refused = upload(client, d, 1, constant_update(1, base1, 5.0))
    assert refused.status_code == 409
    assert refused.get_json()["code"] == "too_stale"
    assert stored_updates(app) == before
    assert sorted((tmp_path / "data" / "updates").rglob("*")) == files
    # A retry of an acknowledged upload still gets its first receipt.
    again = upload(client, c, 1, constant_update(1, base1, 10.0))
    assert again.status_code == 200 and again.get_json() == late.get_json()


def fresh_then_stale_buffer(client: Any) -> str:
    """Two steps of a buffer of 2: a fresh one (updates 1 and 3 on version 1,
    mean 2), then one with update 10 from version 1 (staleness 1) and update
    4 from version 2 (staleness 0). Returns a device that can read the steps."""
    a, b, c, e = (enrol(client)[1] for _ in range(4))
    tasks = {t: join(client, t) for t in (a, b, c)}
    base1 = tasks[a]["base_checkpoint"]
    assert upload(client, a, 1, constant_update(1, base1, 1.0)).status_code == 201
    assert upload(client, b, 1, constant_update(1, base1, 3.0)).status_code == 201
    np.testing.assert_allclose(step_result(client, a, 1), np.full((2, 2), 2.0), atol=1e-6)
    task_e = join(client, e)
    assert upload(client, c, 1, constant_update(1, base1, 10.0)).status_code == 201
    fresh = constant_update(2, task_e["base_checkpoint"], 4.0)
    assert upload(client, e, 2, fresh).status_code == 201
    return a


def test_a_scaled_step_moves_the_model_less_for_a_stale_buffer(
    make_app: AppFactory, connect: Connect, tmp_path: Path
) -> None:
    # The same uploads as the sequence above, with FedBuff's scaled step.
    app = async_app(
        make_app, tmp_path / "data", buffer=2, concurrency=5, max_staleness=1, scaled_step=True
    )
    client = connect(app)
    a = fresh_then_stale_buffer(client)
    # A fresh buffer: every factor 1, the step as without scaling.
    assert "step_scale" not in client.get("/v1/rounds/1").get_json()["metrics"]
    # Weighted mean (w * 10 + 4) / (w + 1), times the mean factor (w + 1) / 2.
    w = 1 / math.sqrt(2)
    expected = 2.0 + (w * 10.0 + 4.0) / 2
    np.testing.assert_allclose(step_result(client, a, 2), np.full((2, 2), expected), atol=1e-6)
    metrics = client.get("/v1/rounds/2").get_json()["metrics"]
    assert metrics["step_scale"] == pytest.approx((w + 1) / 2)


def test_a_step_weight_scales_the_step_by_its_own_staleness_function(
    make_app: AppFactory, connect: Connect, tmp_path: Path
) -> None:
    # Updates weighed equally (constant), the step scaled by the buffer's
    # mean sqrt factor: the weights and the step's scale are set apart.
    app = async_app(
        make_app,
        tmp_path / "data",
        buffer=2,
        concurrency=5,
        max_staleness=1,
        staleness_weight="constant",
        scaled_step=True,
        step_weight="sqrt",
    )
    client = connect(app)
    a = fresh_then_stale_buffer(client)
    # The plain mean (10 + 4) / 2 = 7, times the mean of 1/sqrt(2) (staleness
    # 1) and 1 (staleness 0).
    scale = (1 / math.sqrt(2) + 1) / 2
    expected = 2.0 + 7.0 * scale
    np.testing.assert_allclose(step_result(client, a, 2), np.full((2, 2), expected), atol=1e-6)
    metrics = client.get("/v1/rounds/2").get_json()["metrics"]
    assert metrics["step_scale"] == pytest.approx(scale)
    assert metrics["mean_staleness_factor"] == 1.0  # the updates' own weights


def test_a_scaled_mean_is_a_copy_and_refuses_bad_factors() -> None:
    from fedge.server.aggregation.errors import AggregationError
    from fedge.server.aggregation.kernels import StreamingMean

    mean = StreamingMean()
    mean.add({"k": np.array([1.0, 3.0], np.float32)}, 1.0)
    mean.add({"k": np.array([3.0, 5.0], np.float32)}, 3.0)
    half = mean.scaled(0.5)
    np.testing.assert_allclose(half.result()["k"], [1.25, 2.25])
    np.testing.assert_allclose(mean.result()["k"], [2.5, 4.5])  # unchanged
    assert (half.count, half.total_weight) == (2, 4.0)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(AggregationError):
            mean.scaled(bad)


def test_hostile_uploads_change_nothing(
    make_app: AppFactory, connect: Connect, tmp_path: Path
) -> None:
    app = async_app(make_app, tmp_path / "data", buffer=3, concurrency=2, lease_s=0.5)
    client = connect(app)
    a, b, c = (enrol(client)[1] for _ in range(3))
    task_a = join(client, a)
    base = task_a["base_checkpoint"]
    assert join(client, a) == task_a  # asking twice holds one slot
    join(client, b)
    # Concurrency 2: the third device is paced, told when to ask again.
    paced = client.post("/v1/tasks", json={"idle": True}, headers=auth(c)).get_json()
    assert paced["task"] is None and paced["reason"] == "concurrency_full"
    assert 0.5 <= paced["retry_after_s"] <= 30 and paced["retry_round"] == 2

    # A future or unknown version, a round it holds no task on.
    future = upload(client, a, 7, constant_update(7, base, 1.0))
    assert (future.status_code, future.get_json()["code"]) == (404, "unknown_round")
    wrong_base = upload(client, a, 1, constant_update(1, "0" * 64, 1.0))
    assert (wrong_base.status_code, wrong_base.get_json()["code"]) == (409, "stale_base")
    claims_future = upload(client, a, 1, constant_update(7, base, 1.0))
    assert (claims_future.status_code, claims_future.get_json()["code"]) == (400, "wrong_round")
    outsider = upload(client, c, 1, constant_update(1, base, 1.0))
    assert (outsider.status_code, outsider.get_json()["code"]) == (403, "not_selected")

    # A flood from one device: one update per task.
    assert upload(client, a, 1, constant_update(1, base, 1.0)).status_code == 201
    flood = upload(client, a, 1, constant_update(1, base, 2.0))
    assert (flood.status_code, flood.get_json()["code"]) == (409, "duplicate_update")
    again = client.post("/v1/tasks", json={"idle": True}, headers=auth(a)).get_json()
    assert again["reason"] == "already_contributed"
    assert stored_updates(app) == 1

    # After its lease: B's half a second is up.
    time.sleep(0.6)
    late = upload(client, b, 1, constant_update(1, base, 1.0))
    assert (late.status_code, late.get_json()["code"]) == (409, "lease_expired")
    assert stored_updates(app) == 1
    # Its slot is free again: C gets a task now.
    assert join(client, c)["round_id"] == 1


def test_the_aggregation_settings_merge_and_bad_ones_are_refused(tmp_path: Path) -> None:
    from fedge.server.config import load_config
    from fedge.server.errors import ConfigurationError

    toml = tmp_path / "fedge.toml"
    toml.write_text('[aggregation]\nmode = "async"\nbuffer = 4\n')
    config = load_config(toml, environ={}, overrides={"aggregation": {"concurrency": 9}})
    assert (config.aggregation.mode, config.aggregation.buffer) == ("async", 4)
    assert config.aggregation.concurrency == 9
    assert load_config(None, environ={"FEDGE_AGGREGATION": "async"}).aggregation.enabled
    assert not load_config(None, environ={}).aggregation.enabled  # sync stays the default
    for bad in (
        {"mode": "later"},
        {"mode": "async", "buffer": 0},
        {"staleness_weight": "cubic"},
        {"max_staleness": -1},
        {"lease_s": 0},
        {"scaled_step": "sometimes"},
        {"scaled_step": True, "step_weight": "cubic"},
        {"step_weight": "sqrt"},  # a step weight without the scaled step means nothing
        {"buffr": 3},
    ):
        with pytest.raises(ConfigurationError):
            load_config(None, environ={}, overrides={"aggregation": bad})


def test_central_dp_in_async_mode_needs_constant_staleness_weights(make_app: AppFactory) -> None:
    from fedge.server.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="constant"):
        make_app(aggregation={"mode": "async"}, dp_clip_norm=1.0, dp_noise_multiplier=0.5)
