"""A fleet over real HTTP: faults are rejected by reason, rounds still close."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from fedge.cli import main
from fedge.client_sim.fleet import FleetConfig, run_fleet


def test_faulty_devices_are_rejected_and_rounds_complete() -> None:
    config = FleetConfig(
        devices=10,
        per_round=4,
        rounds=3,
        seed=1,
        workers=4,
        over_selection=2.0,
        faults={"nan": 1, "wrong_shape": 1, "replay": 1, "stale_base": 1},
        crash=0.3,
        deadline_s=30.0,
    )

    report = run_fleet(config)

    assert [r.state for r in report.rounds] == ["closed"] * 3
    assert all(r.participants == 4 for r in report.rounds)
    rejects: dict[str, int] = {}
    for r in report.rounds:
        for reason, count in r.rejects.items():
            rejects[reason] = rejects.get(reason, 0) + count
    assert rejects.get("non_finite", 0) >= 1
    assert rejects.get("wrong_weights", 0) >= 1
    # replay and stale base show up once the device has an older round to reuse
    assert rejects.get("stale_base", 0) + rejects.get("wrong_round", 0) >= 1
    accepted = [d for devices in report.selected.values() for d in devices]
    assert 0 not in accepted and 1 not in accepted  # NaN and wrong shapes, every time
    # replay and stale base need an earlier round to misuse: their first update is honest
    assert accepted.count(2) <= 1 and accepted.count(3) <= 1
    assert report.crashes >= 1
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
    assert "final global test accuracy" in result.output
    report = json.loads(out_json.read_text())
    assert [r["state"] for r in report["rounds"]] == ["closed", "closed"]
    assert len(report["participation"]) == 6
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_simulate_refuses_more_per_round_than_devices() -> None:
    result = CliRunner().invoke(main, ["simulate", "--devices", "3", "--per-round", "5"])

    assert result.exit_code != 0
    assert "5 per round > 3 devices" in result.output
