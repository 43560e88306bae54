"""The update pipeline's stages on numbers checkable by hand, and the
regressions it fixed: the norm measured once per update, one clip for the
norm bound and central DP, the deltas scaled once."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

import fedge.wire.update_codec
from fedge.server.aggregation.central_dp import CentralDP, GaussianNoise
from fedge.server.aggregation.errors import UpdateRefused
from fedge.server.aggregation.pipeline import (
    Bounds,
    Candidate,
    Clip,
    ExampleWeight,
    NormBound,
    UnitWeight,
    run_stages,
)
from fedge.server.aggregation.strategies import FedAvg
from fedge.server.config import ServerConfig
from fedge.server.errors import BadRequest, Conflict, ServerError, Unprocessable
from fedge.server.rounds.strategy import RoundStrategy
from fedge.server.rounds.validation import continue_validation, validate_update
from fedge.wire.update_codec import Update, UpdateMeta, decode_update, encode_update, global_norm
from fedge.wire.weight_spec import ModelSpec
from tests.server.conftest import AppFactory
from tests.server.helpers import OCTET, auth

BASE = "ab" * 32
SPEC = ModelSpec.from_json(
    [
        {"name": "a", "shape": [2], "dtype": "float32"},
        {"name": "b", "shape": [1], "dtype": "float32"},
    ]
)


def f32(*values: float) -> npt.NDArray[np.float32]:
    return np.array(values, dtype=np.float32)


def update(a: tuple[float, float] = (3, 4), b: float = 12, num_examples: int = 50) -> Update:
    """By default the deltas 3, 4, 12: norm sqrt(9 + 16 + 144) = 13."""
    meta = UpdateMeta(round_id=1, base_checkpoint=BASE, num_examples=num_examples)
    return Update(meta=meta, deltas={"a": f32(*a), "b": f32(b)})


@pytest.fixture
def norm_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts every call of ``global_norm``, under whatever name a fedge module imported it."""
    calls: list[int] = []
    original = fedge.wire.update_codec.global_norm

    def counting(tensors: Any) -> float:
        calls.append(1)
        return original(tensors)

    for name, module in list(sys.modules.items()):
        if name.startswith("fedge") and getattr(module, "global_norm", None) is original:
            monkeypatch.setattr(module, "global_norm", counting)
    yield calls


# -- stages ------------------------------------------------------------------------


def test_bounds_measures_the_norm_and_checks_round_base_and_count() -> None:
    bounds = Bounds(round_id=1, base_checkpoint=BASE)

    candidate = bounds.admit(update())

    assert candidate.norm == 13.0
    assert (candidate.scale, candidate.weight, candidate.clipped) == (1.0, 0.0, False)
    with pytest.raises(UpdateRefused) as wrong_round:
        Bounds(round_id=2, base_checkpoint=BASE).admit(update())
    with pytest.raises(UpdateRefused) as stale:
        Bounds(round_id=1, base_checkpoint="cd" * 32).admit(update())
    with pytest.raises(UpdateRefused, match="b holds NaN") as nan:
        bounds.admit(update(b=float("nan")))
    with pytest.raises(UpdateRefused) as no_examples:
        bounds.admit(update(num_examples=0))
    assert (wrong_round.value.kind, wrong_round.value.code) == ("misdirected", "wrong_round")
    assert (stale.value.kind, stale.value.code) == ("stale", "stale_base")
    assert (nan.value.kind, nan.value.code) == ("invalid", "non_finite")
    assert (no_examples.value.kind, no_examples.value.code) == ("invalid", "bad_num_examples")


def test_a_clip_scales_to_the_bound_and_deltas_are_scaled_once() -> None:
    candidate = Candidate.measure(update().deltas, 50)

    clipped = Clip(6.5).apply(candidate)  # 13 -> 6.5: half

    assert clipped.scale == 0.5
    assert clipped.current_norm == 6.5
    assert clipped.clipped_by == ("clip",)
    deltas = clipped.scaled_deltas()
    np.testing.assert_array_equal(deltas["a"], f32(1.5, 2.0))
    np.testing.assert_array_equal(deltas["b"], f32(6.0))
    assert Clip(13.0).apply(candidate) is candidate  # at the bound: nothing to do
    assert candidate.scaled_deltas()["a"] is candidate.deltas["a"]  # unclipped: no copy


def test_the_norm_bound_rejects_or_clips() -> None:
    candidate = Candidate.measure(update().deltas, 50)

    with pytest.raises(UpdateRefused, match="13 exceeds the bound 10") as caught:
        NormBound(10.0, "reject").apply(candidate)
    clipped = NormBound(10.0, "clip").apply(candidate)

    assert (caught.value.kind, caught.value.code) == ("invalid", "norm_too_large")
    assert clipped.scale == pytest.approx(10 / 13)
    assert clipped.clipped_by == ("norm_bound",)
    assert NormBound(13.0, "reject").apply(candidate) is candidate


def test_two_clips_compose_to_the_tighter_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    from fedge.server.aggregation import kernels as aggregation
    from fedge.server.aggregation import pipeline

    scaled: list[float] = []
    original = aggregation.scale_weights

    def counting(deltas: Any, factor: float) -> Any:
        scaled.append(factor)
        return original(deltas, factor)

    monkeypatch.setattr(pipeline, "scale_weights", counting)
    candidate = Candidate.measure(update().deltas, 50)

    done = run_stages(candidate, (NormBound(10.0, "clip"), Clip(6.5, "dp_clip")))
    deltas = done.scaled_deltas()

    # 13 -> 10 -> 6.5: a factor of 10/13, then 6.5/10; together 0.5, applied once.
    assert done.clipped_by == ("norm_bound", "dp_clip")
    assert done.scale == pytest.approx(0.5)
    assert scaled == [pytest.approx(0.5)]
    assert global_norm(deltas) == pytest.approx(6.5)


def test_weights_are_the_capped_example_count_or_one() -> None:
    candidate = Candidate.measure(update().deltas, 50)

    assert ExampleWeight().apply(candidate).weight == 50.0
    assert ExampleWeight(cap=10).apply(candidate).weight == 10.0
    assert UnitWeight().apply(candidate).weight == 1.0


def test_gaussian_noise_without_noise_rescales_to_the_fixed_denominator() -> None:
    # The mean of 2 updates is [2, 4]; their sum over a fixed 4 is [1, 2].
    noise = GaussianNoise(clip_norm=2.0, noise_multiplier=0.0, clients_per_round=4)

    result = noise.apply({"w": f32(2, 4)}, count=2, round_=1)

    np.testing.assert_array_equal(result["w"], f32(1, 2))
    assert GaussianNoise(2.0, 1.0, clients_per_round=4).std(count=2) == 0.5  # 1 * 2 / 4
    assert GaussianNoise(2.0, 1.0).std(count=2) == 1.0  # 1 * 2 / 2


# -- validation ------------------------------------------------------------------


def test_validation_with_the_strategy_stages_stores_the_clipped_update() -> None:
    raw = encode_update(update())

    valid = validate_update(
        raw, "d" * 64, 1, BASE, SPEC, 10.0, "clip", stages=(Clip(6.5, "dp_clip"), UnitWeight())
    )

    assert valid.norm == 13.0
    assert valid.clipped and valid.clipped_by == ("norm_bound", "dp_clip")
    assert valid.scale == pytest.approx(0.5)
    assert valid.clipped_norm == pytest.approx(6.5)
    assert valid.weight == 1.0
    stored = decode_update(valid.stored_bytes, SPEC)
    np.testing.assert_allclose(stored.deltas["a"], f32(1.5, 2.0))
    np.testing.assert_allclose(stored.deltas["b"], f32(6.0))
    assert stored.meta == update().meta


def test_validation_in_two_steps_gives_the_same_update() -> None:
    raw = encode_update(update())
    stages = (Clip(6.5, "dp_clip"), UnitWeight())

    at_once = validate_update(raw, "d" * 64, 1, BASE, SPEC, 10.0, "clip", stages=stages)
    first = validate_update(raw, "d" * 64, 1, BASE, SPEC, 10.0, "clip")
    second = continue_validation(first, stages)

    assert first.scale == pytest.approx(10 / 13) and first.weight == 0.0
    assert (second.norm, second.clipped_by, second.weight) == (13.0, at_once.clipped_by, 1.0)
    assert second.scale == pytest.approx(at_once.scale)
    for name in ("a", "b"):
        np.testing.assert_allclose(
            second.update.deltas[name], at_once.update.deltas[name], rtol=1e-6
        )


@pytest.mark.parametrize(
    ("sent", "max_norm", "error", "code", "message"),
    [
        (update(), None, BadRequest, "wrong_round", "the update is for round 1, uploaded to round"),
        (update(num_examples=0), None, Unprocessable, "bad_num_examples", "num_examples must be"),
        (update(b=float("inf")), None, Unprocessable, "non_finite", "b holds NaN or infinite"),
        (update(), 10.0, Unprocessable, "norm_too_large", "update norm 13 exceeds the bound 10"),
    ],
)
def test_validation_answers_a_refusal_with_the_http_error_of_its_kind(
    sent: Update, max_norm: float | None, error: type[ServerError], code: str, message: str
) -> None:
    """The pipeline's refusals know no HTTP: validation maps each kind to a
    status and keeps the code and message."""
    round_id = 2 if code == "wrong_round" else 1

    with pytest.raises(error) as caught:
        validate_update(encode_update(sent), "d" * 64, round_id, BASE, SPEC, max_norm, "reject")

    assert type(caught.value) is error
    assert caught.value.code == code
    assert caught.value.message.startswith(message)


def test_validation_answers_a_stale_base_with_a_conflict() -> None:
    with pytest.raises(Conflict) as caught:
        validate_update(encode_update(update()), "d" * 64, 1, "cd" * 32, SPEC, None, "reject")

    assert (caught.value.status, caught.value.code) == (409, "stale_base")
    assert "download the current checkpoint" in caught.value.message


def test_an_update_within_every_bound_is_stored_as_uploaded() -> None:
    raw = encode_update(update())

    valid = validate_update(raw, "d" * 64, 1, BASE, SPEC, 20.0, "clip", stages=(UnitWeight(),))

    assert valid.stored_bytes is raw
    assert not valid.clipped and valid.scale == 1.0


# -- regressions -----------------------------------------------------------------


def test_the_norm_is_measured_once_per_update(norm_calls: list[int]) -> None:
    """Regression: validation, the clip policy and the strategy's prepare
    each measured the norm again (three times with central DP)."""
    config = ServerConfig(max_update_norm=10.0, norm_policy="clip", dp_clip_norm=6.5)
    strategy = RoundStrategy(config)
    raw = encode_update(update())

    valid = validate_update(
        raw, "d" * 64, 1, BASE, SPEC, 10.0, config.norm_policy, stages=strategy.stages
    )
    weight = strategy.weight(valid.update.deltas, 50)

    assert len(norm_calls) == 1
    assert valid.clipped_by == ("norm_bound", "dp_clip")
    assert valid.weight == weight == 1.0


def test_an_upload_measures_the_norm_once(make_app: AppFactory, norm_calls: list[int]) -> None:
    """The same through the server: one upload, one norm (the round stays
    open, so nothing is aggregated)."""
    app = make_app(
        max_update_norm=10.0,
        norm_policy="clip",
        dp_clip_norm=6.5,
        dp_noise_multiplier=1.0,
        rounds={"target_participants": 3},
    )
    client = app.test_client()
    token = client.post("/v1/devices", json={"platform": "test"}).get_json()["token"]
    task = client.post("/v1/tasks", json={"idle": True}, headers=auth(token)).get_json()["task"]
    deltas = {"dense/kernel": np.full((2, 2), 3.0, np.float32), "dense/bias": f32(4, 0)}
    meta = UpdateMeta(round_id=1, base_checkpoint=task["base_checkpoint"], num_examples=5)
    body = encode_update(Update(meta=meta, deltas=deltas))  # norm sqrt(4 * 9 + 16) ~ 7.2
    norm_calls.clear()

    reply = client.post("/v1/rounds/1/updates", data=body, headers=auth(token), content_type=OCTET)

    assert reply.status_code == 201, reply.get_json()
    assert reply.get_json()["clipped"] is True
    assert reply.get_json()["norm"] == pytest.approx(np.sqrt(52))
    assert len(norm_calls) == 1


def test_a_stored_update_is_weighed_without_reading_it() -> None:
    """Regression: recovery re-ran the strategy's prepare (norm and clip) on
    every stored update just to learn its weight."""
    plain = RoundStrategy(ServerConfig(max_example_weight=10))
    private = RoundStrategy(ServerConfig(dp_clip_norm=1.0))

    assert plain.weight(None, 50) == 10.0
    assert plain.weight(None, 3) == 3.0
    assert private.weight(None, 50) == 1.0


def test_central_dp_prepare_and_the_server_clip_the_same_way() -> None:
    strategy = CentralDP(FedAvg(), clip_norm=6.5, noise_multiplier=0.0)
    raw = encode_update(update())

    prepared = strategy.prepare(update().deltas, 50)
    valid = validate_update(
        raw, "d" * 64, 1, BASE, SPEC, None, "reject", stages=strategy.update_stages()
    )

    assert (prepared.norm, prepared.weight, prepared.clipped) == (13.0, 1.0, True)
    assert (valid.norm, valid.weight, valid.clipped) == (13.0, 1.0, True)
    for name in ("a", "b"):
        np.testing.assert_array_equal(prepared.delta[name], valid.update.deltas[name])
