"""``fedge simulate --aggregation async`` with the embedded server runs the
free-run driver (devices ask for work whenever their own heavy-tailed time
comes; no round-by-round passes) and prints the versions over time with
their staleness and accuracy. The command runs through click's runner; the
fleet speaks HTTP to its server."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from fedge.cli.main import main

ASYNC = [
    "simulate", "--devices", "8", "--per-round", "3", "--rounds", "3", "--seed", "3",
    "--workers", "4", "--aggregation", "async", "--concurrency", "6", "--max-staleness", "3",
    "--speed-spread", "0.5", "--deadline", "60",
]  # fmt: skip


def test_async_simulate_runs_free_and_prints_versions_over_time(tmp_path: Path) -> None:
    out = tmp_path / "run.json"

    result = CliRunner().invoke(main, [*ASYNC, "--report", str(out)], env={"COLUMNS": "300"})

    assert result.exit_code == 0, result.output
    assert "fedge simulate: versions (asynchronous aggregation)" in result.output
    assert "fedge simulate: rounds" not in result.output  # not the round-by-round driver
    report = json.loads(out.read_text())
    assert report["mode"] == "async"
    versions = report["versions"]
    ids = [v["model_id"] for v in versions]
    assert ids == sorted(set(ids)) and ids[-1] >= 3  # stopped once 3 versions were made
    seconds = [v["seconds"] for v in versions]
    assert seconds == sorted(seconds) and seconds[-1] <= report["seconds"]
    for version in versions:
        server = version["server_metrics"]
        assert server["updates"] >= 3  # K = --per-round
        assert 0 <= server["mean_staleness"] <= server["max_staleness"] <= 3
        assert sum(server["staleness_histogram"].values()) == server["updates"]
        assert 0.0 <= version["metrics"]["accuracy"] <= 1.0
    # Devices stepped on their own clocks: at least K x 3 contributions.
    assert report["outcomes"]["contributed"] >= 9
    assert report["device_seconds"] > 0
    (summary,) = [line for line in result.output.splitlines() if " versions made (" in line]
    assert summary.startswith(f"{ids[-1]} versions made ({len(ids)} scored")
    assert "contributed" in summary
    assert "final global accuracy" in result.output


def test_async_simulate_refuses_a_round_plot(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, [*ASYNC, "--plot", str(tmp_path / "p.png")])
    assert result.exit_code == 2
    assert "--plot draws rounds" in result.output


def test_async_simulate_refuses_release_every_and_says_what_counts_versions() -> None:
    result = CliRunner().invoke(main, [*ASYNC, "--release-every", "2"])
    assert result.exit_code == 1
    assert "release_every_rounds = N (it counts versions)" in result.output
