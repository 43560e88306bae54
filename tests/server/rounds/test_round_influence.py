"""How far one device can move a round, on a real database without Flask:
the share cap at close (after a restart too), equal weights, and the norm
bound each round opens with."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedge.server.errors import Unprocessable
from fedge.server.rounds.global_model import read_checkpoint
from tests.server.helpers import SPECS, constant_update
from tests.server.parts import Parts, PartsOn

FOUR = {"target_participants": 4, "min_participants": 2}


def send(parts: Parts, round_id: int, value: float, examples: int) -> dict[str, Any]:
    device = parts.device()
    base = parts.task(device)["base_checkpoint"]
    receipt, _ = parts.ingest.accept(
        device, round_id, constant_update(round_id, base, value, examples)
    )
    return receipt


def closed_bias(parts: Parts, round_id: int) -> Any:
    parts.lifecycle.drive()
    record = parts.round(round_id)
    assert record.state == "closed", record
    assert record.result_checkpoint is not None
    return read_checkpoint(parts.blobs.checkpoints, record.result_checkpoint, SPECS).weights[
        "dense/bias"
    ]


def test_no_device_holds_more_than_twice_an_equal_share(parts_on: PartsOn, tmp_path: Path) -> None:
    parts = parts_on(tmp_path, max_update_norm=0, rounds=FOUR)
    # 10M claimed examples weigh 100 (the example cap); the share cap then
    # cuts 100 to t = 0.5 * 3 / (1 - 0.5) = 3 against three weights of 1.
    send(parts, 1, 9.0, 10_000_000)
    for value in (1.0, 2.0, 3.0):
        send(parts, 1, value, 1)

    bias = closed_bias(parts, 1)

    np.testing.assert_allclose(bias, [(3 * 9 + 1 + 2 + 3) / 6] * 2, rtol=1e-6)
    assert parts.round(1).metrics["max_device_share"] == pytest.approx(0.5)


def test_the_share_cap_after_a_restart_gives_the_same_model(
    parts_on: PartsOn, tmp_path: Path
) -> None:
    first = parts_on(tmp_path / "a", max_update_norm=0, rounds=FOUR)
    restarted_dir = tmp_path / "b"
    before = parts_on(restarted_dir, max_update_norm=0, rounds=FOUR)
    for parts in (first, before):
        send(parts, 1, 9.0, 10_000_000)
        send(parts, 1, 1.0, 1)
        send(parts, 1, 2.0, 1)
    after = parts_on(restarted_dir, max_update_norm=0, rounds=FOUR)  # kill -9 and start
    for parts in (first, after):
        send(parts, 1, 3.0, 1)

    np.testing.assert_array_equal(closed_bias(after, 1), closed_bias(first, 1))


def test_equal_weighting_ignores_the_claimed_examples(parts_on: PartsOn, tmp_path: Path) -> None:
    parts = parts_on(tmp_path, max_update_norm=0, device_weighting="equal")
    send(parts, 1, 9.0, 10_000_000)
    send(parts, 1, 1.0, 1)

    np.testing.assert_allclose(closed_bias(parts, 1), [5.0, 5.0])


def test_a_round_opens_with_the_median_norm_of_recent_rounds_and_keeps_it(
    parts_on: PartsOn,
    tmp_path: Path,
) -> None:
    parts = parts_on(tmp_path, rounds=FOUR)
    # Round 1: no history, the fixed bound 10 * sqrt(6).
    assert parts.round(1).config["max_update_norm"] == pytest.approx(10 * math.sqrt(6))
    for value in (1.0, 2.0, 3.0, 4.0):  # norms value * sqrt(6)
        send(parts, 1, value, 1)
    closed_bias(parts, 1)
    bound = parts.round(2).config["max_update_norm"]
    assert bound == pytest.approx(2.5 * math.sqrt(6))  # the median of 1..4, times 1

    receipt = send(parts, 2, 9.0, 1)  # clipped to the bound, not refused
    # A restart with another multiple: the open round keeps its bound.
    restarted = parts_on(tmp_path, rounds=FOUR, norm_bound_multiple=10.0)
    second = send(restarted, 2, 9.5, 1)

    assert receipt["clipped"] and second["clipped"]
    assert restarted.round(2).config["max_update_norm"] == bound
    send(restarted, 2, 1.0, 1)
    send(restarted, 2, 2.0, 1)
    # Round 1 made 2.5; the clipped updates are 2.5 each: 2.5 + (2.5 + 2.5 + 1 + 2) / 4.
    np.testing.assert_allclose(closed_bias(restarted, 2), [4.5, 4.5], rtol=1e-6)


def test_reject_stays_an_option(parts_on: PartsOn, tmp_path: Path) -> None:
    parts = parts_on(tmp_path, max_update_norm=1.0, norm_policy="reject")
    device = parts.device()
    base = parts.task(device)["base_checkpoint"]

    with pytest.raises(Unprocessable, match="exceeds the bound"):
        parts.ingest.accept(device, 1, constant_update(1, base, 9.0))
    assert parts.round_sum.count == 0
