"""A fleet over real HTTP: faults are rejected by reason, rounds still close."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from fedge.cli.main import main
from fedge.client_sim.fleet.config import FleetConfig
from fedge.client_sim.fleet.run import run_fleet


def test_faulty_devices_are_rejected_and_rounds_complete() -> None:
    # Devices 0..3 misbehave (NaN deltas, a truncated tensor, a replay of
    # their previous update, training on an old checkpoint); 4..9 are honest.
    # Every device crashes once in every upload and, after a restart, sends
    # the same bytes again.
    config = FleetConfig(
        devices=10,
        per_round=4,
        rounds=3,
        seed=1,
        workers=4,
        over_selection=2.0,
        faults={"nan": 1, "wrong_shape": 1, "replay": 1, "stale_base": 1},
        crash=1.0,
        deadline_s=30.0,
    )

    report = run_fleet(config)

    # Which devices are selected, and how many uploads land between the 4th
    # and the close, depend on thread timing. What does not:
    # * every round closes, with at least its quorum of 2 (per_round // 2:
    #   a round that has not filled by its deadline closes with its quorum)
    #   and at most its 4 x 2.0 = 8 selected devices. (Pace steering can leave
    #   a small fleet's round to its deadline: the devices it told to come
    #   back in a later round do not ask again in this one; see the issue 14
    #   closing note.)
    assert [r.state for r in report.rounds] == ["closed"] * 3
    assert all(2 <= r.participants <= 8 for r in report.rounds)
    # * a crashed upload sent again counts once: each device at most once per
    #   round, and the server's count is the number of devices it accepted;
    for r in report.rounds:
        accepted = report.selected[r.round_id]
        assert len(accepted) == len(set(accepted)) == r.participants
    # * NaN and wrong shapes are never accepted; a replay or a stale base can
    #   only be the device's first (honest) update;
    assert report.participation[0] == report.participation[1] == 0
    assert report.participation[2] <= 1 and report.participation[3] <= 1
    # * every refusal is one the faults explain, or an upload that arrived
    #   after its round closed;
    rejects: dict[str, int] = {}
    for r in report.rounds:
        for reason, count in r.rejects.items():
            rejects[reason] = rejects.get(reason, 0) + count
    explained = {"non_finite", "wrong_weights", "wrong_round", "stale_base", "round_closed"}
    assert set(rejects) <= explained
    # * devices 0 and 1 are refused for their own reasons: 3 rounds of 4 need
    #   12 updates, first-time devices (2..9) give at most 8, so in some round
    #   the fair sampler admits nobody who has taken part before half the
    #   deadline (15 s) has passed. Devices 0 and 1, never accepted, are
    #   admitted to that round at once, and it is open while they upload;
    assert rejects.get("non_finite", 0) >= 1
    assert rejects.get("wrong_weights", 0) >= 1
    # * every upload crashed once, and each one ended accepted or refused;
    #   the accepted ones are the rounds' updates, at least each round's quorum.
    assert report.crashes == sum(report.participation) + sum(rejects.values())
    assert sum(report.participation) == sum(r.participants for r in report.rounds) >= 3 * 2
    assert all(np.isfinite(w).all() for w in report.final_weights.values())


def test_simulate_cli_writes_a_report_and_a_plot(tmp_path: Path) -> None:
    out_json, out_png = tmp_path / "run.json", tmp_path / "run.png"

    result = CliRunner().invoke(
        main,
        [
            "simulate",
            "--devices",
            "6",
            "--per-round",
            "3",
            "--rounds",
            "2",
            "--dropout",
            "0.2",
            "--over-selection",
            "2",
            "--report",
            str(out_json),
            "--plot",
            str(out_png),
        ],
    )

    assert result.exit_code == 0, result.output
    assert "global test accuracy: round 0 (deployed)" in result.output
    report = json.loads(out_json.read_text())
    # The hybrid story: the deployed model was trained centrally on the
    # public part, so round 0 already classifies the global test split.
    assert report["scores"]["deployed"]["global_test"]["accuracy"] > 0.85
    assert set(report["scores"]) == {"deployed", "final", "personalised"}
    assert [r["state"] for r in report["rounds"]] == ["closed", "closed"]
    assert len(report["participation"]) == 6
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_simulate_refuses_more_per_round_than_devices() -> None:
    result = CliRunner().invoke(main, ["simulate", "--devices", "3", "--per-round", "5"])

    assert result.exit_code != 0
    assert "5 per round > 3 devices" in result.output


def test_each_fleet_round_is_one_server_round() -> None:
    # 8 devices, 2 per round: one pass over the devices used to fill round 1
    # and then round 2 as well, so the fleet reported rounds 1, 3, 5.
    config = FleetConfig(devices=8, per_round=2, rounds=3, seed=2, workers=4, public_fraction=0.0)

    report = run_fleet(config)

    assert [r.round_id for r in report.rounds] == [1, 2, 3]
    assert sorted(report.selected) == [1, 2, 3]
    assert all(
        len(report.selected[r]) == r_.participants
        for r, r_ in zip([1, 2, 3], report.rounds, strict=True)
    )
