"""How many updates close a fleet's rounds (``--per-round``).

The default fits the fleet (the README's example has 8 devices and used to
stop at ``10 per round > 8 devices``); a target the fleet cannot meet is
refused naming the options to change. With ``--server`` the round target is
the server's (``fedge serve --per-round``): the simulator reads it from the
server's public round info, says so when its own ``--per-round`` differs,
and warns of a target larger than the fleet, whose rounds each wait for
their deadline unless devices from elsewhere fill them."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from fedge.cli.main import main
from fedge.client_sim.fleet.config import FleetConfig
from fedge.client_sim.fleet.run import run_fleet
from tests.helpers.live_server import running


def simulate(*args: str) -> tuple[Result, float]:
    """``fedge simulate`` in process (click's runner): its fleet still talks
    HTTP to the server process; a process of its own would only import
    TensorFlow again. Its messages are on the result's stderr."""
    started = time.monotonic()
    result = CliRunner().invoke(main, ["simulate", *args])
    return result, time.monotonic() - started


def test_per_round_defaults_to_the_fleet_size_when_it_is_smaller() -> None:
    report = run_fleet(FleetConfig(devices=3, rounds=1, public_fraction=0.0, workers=3))

    assert report.config["per_round"] == 3
    assert [r.state for r in report.rounds] == ["closed"]
    assert report.rounds[0].participants == 3


def test_help_states_the_per_round_default() -> None:
    result = CliRunner().invoke(main, ["simulate", "--help"])

    assert "min(10, --devices)" in " ".join(result.output.split())


def test_a_target_larger_than_the_fleet_names_the_options() -> None:
    result = CliRunner().invoke(main, ["simulate", "--devices", "3", "--per-round", "5"])

    assert result.exit_code != 0
    assert "5 per round > 3 devices" in result.output
    assert "--devices" in result.output


@pytest.mark.long(24)
def test_server_target_larger_than_the_fleet_is_reported_naming_the_option(
    tmp_path: Path,
) -> None:
    # The server's default target is 10; 4 devices could only close its
    # rounds at their deadline.
    serve_args = ["--deadline", "5"]
    with running(tmp_path / "data", serve_args, tmp_path / "server.log") as server:
        result, _ = simulate("--server", server.url, "--devices", "4", "--rounds", "2")

    # Rounds close at their 5 s deadline with a quorum; the user is told why.
    assert result.exit_code == 0, result.stderr + repr(result.exception)
    assert "closes a round at 10 updates" in result.stderr, result.stderr
    assert "--per-round" in result.stderr and "fedge serve" in result.stderr


@pytest.mark.long(25)
def test_with_a_server_rounds_close_at_its_target_well_before_the_deadline(
    tmp_path: Path,
) -> None:
    # 6 devices for a target of 2: round 2 has devices that have not taken
    # part yet, so the server's fair sampler does not hold it to half time.
    serve_args = ["--per-round", "2", "--deadline", "60"]
    report = tmp_path / "report.json"
    with running(tmp_path / "data", serve_args, tmp_path / "server.log") as server:
        result, seconds = simulate(
            "--server",
            server.url,
            "--devices",
            "6",
            "--per-round",
            "3",
            "--rounds",
            "2",
            "--report",
            str(report),
        )

    assert result.exit_code == 0, result.stderr + repr(result.exception)
    # The server's target wins, and the user is told that theirs was not used.
    assert "closes a round at 2 updates" in result.stderr, result.stderr
    assert "--per-round 3" in result.stderr
    rounds = json.loads(report.read_text())["rounds"]
    assert [r["state"] for r in rounds] == ["closed", "closed"]
    assert json.loads(report.read_text())["config"]["per_round"] == 2
    # Each round closed at its target, not at its 60 s deadline.
    assert all(r["seconds"] < 20 for r in rounds), rounds
    assert seconds < 120  # building the model included
