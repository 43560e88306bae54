"""``fedge simulate --health-window S --restyle FRACTION --restyle-at ROUND``
(issue 23): the embedded server's health window, a share of the digits
devices switched to a new handwriting style at a round, and the health
table and closing lines that say whether the drift alert was raised. The
command runs through click's runner; the fleet speaks HTTP to its server.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from fedge.cli.main import main

SMALL = ["simulate", "--devices", "8", "--per-round", "4", "--rounds", "4", "--seed", "5"]


def simulate(*args: str) -> Result:
    return CliRunner().invoke(main, [*SMALL, "--workers", "4", *args], env={"COLUMNS": "300"})


@pytest.mark.parametrize("fraction", ["1", "0.25"])
def test_restyled_devices_raise_the_alert_a_minority_does_not(
    tmp_path: Path, fraction: str
) -> None:
    out = tmp_path / "run.json"
    result = simulate(
        "--health-window", "1", "--restyle", fraction, "--restyle-at", "3", "--report", str(out)
    )

    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    config, health = report["config"], report["releases"]["health"]
    assert (config["health_window_s"], config["restyle"]) == (1.0, "invert")
    assert (config["restyle_fraction"], config["restyle_after_round"]) == (float(fraction), 3)
    assert "the live model's health (release 1)" in result.output
    (line,) = [s for s in result.output.splitlines() if s.startswith("health: release 1 (tflite)")]
    alerts = [w for w in health["windows"] if w["alert"]]
    if fraction == "1":
        # The windows before round 3 are healthy; after it, every device drifted.
        assert alerts and all(w["window"] > health["windows"][1]["window"] for w in alerts)
        first = alerts[0]
        assert line.startswith(f"health: release 1 (tflite): ALERT in {len(alerts)} of ")
        assert f"first window {first['window']}: {first['votes']} of {first['voters']}" in line
        assert "ALERT" in result.output.split("the live model's health")[1]
    else:
        # 2 of 8 devices restyled: a minority never raises the alert.
        assert alerts == []
        judged = len(health["windows"])
        assert judged >= 2
        assert line == f"health: release 1 (tflite): {judged} windows judged, no alert"


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--restyle", "0.5"], "--restyle FRACTION and --restyle-at ROUND go together"),
        (["--restyle-at", "2"], "--restyle FRACTION and --restyle-at ROUND go together"),
        (["--restyle", "0.5", "--restyle-at", "2"], "give --health-window S"),
        (["--health-window", "1", "--restyle", "0", "--restyle-at", "2"], "--restyle"),
        (["--health-window", "1", "--restyle", "1.5", "--restyle-at", "2"], "--restyle"),
        (["--health-window", "0.5"], "--health-window"),
        (["--health-window", "1", "--restyle", "1", "--restyle-at", "0"], "--restyle-at"),
    ],
)
def test_bad_health_options_are_refused_before_anything_runs(args: list[str], said: str) -> None:
    result = simulate(*args)

    assert result.exit_code == 2, result.output
    assert said in result.output
    assert "round" not in result.output.split("Error")[0].lower()  # no round ran
