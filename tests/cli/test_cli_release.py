"""``fedge push``, ``rollout``, ``promote``, ``rollback`` and ``releases``
against a real ``fedge serve`` process.

``fedge push`` of a plain Keras model runs as its own process (the console
script, as a user runs it): it converts the model with the same progress
display as ``fedge convert``, then uploads the bundle. The other commands
run in process through click's runner; every one talks HTTP to the server.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner, Result

from fedge.cli.main import main
from tests.helpers.live_server import LiveServer, running
from tests.helpers.release_bundles import Built, build, save_model

FEDGE = Path(sys.executable).parent / "fedge"
TOKEN = "admin-secret"  # tests.helpers.live_server.start's default


@dataclass(frozen=True)
class Models:
    first: Built
    second: Built
    plain_keras: Path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    root = tmp_path_factory.mktemp("cli-release")
    return Models(
        first=build(root, "first", 0.0),
        second=build(root, "second", 1.0),
        plain_keras=save_model(root / "plain.keras", 5.0),
    )


@pytest.fixture
def server(models: Models, tmp_path: Path) -> Iterator[LiveServer]:
    with running(tmp_path / "data", ["--model", str(models.first.path)], tmp_path / "log") as live:
        yield live


def fedge(*args: str, token: str | None = TOKEN) -> Result:
    env = {"FEDGE_ADMIN_TOKEN": token} if token is not None else {}
    return CliRunner().invoke(main, list(args), env=env)


def releases(url: str) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = requests.get(f"{url}/v1/releases", timeout=30).json()["releases"]
    return listed


def test_push_of_a_plain_keras_model_converts_it_and_uploads_the_bundle(
    server: LiveServer, models: Models, tmp_path: Path
) -> None:
    temp = tmp_path / "tmp"  # where the command converts and packs
    temp.mkdir()
    env = {
        **os.environ,
        "FEDGE_ADMIN_TOKEN": TOKEN,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "TMPDIR": str(temp),
    }
    command = [str(FEDGE), "push", str(models.plain_keras), "--server", server.url]
    command += ["--targets", "tflite", "--rollout", "30", "--notes", "retrained", "--by", "eve"]

    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=temp)

    assert result.returncode == 0, result.stderr
    newest = releases(server.url)[0]
    assert (newest["version"], newest["state"], newest["percent"]) == (2, "canary", 30)
    assert (newest["notes"], newest["created_by"], newest["source"]) == ("retrained", "eve", "push")
    assert "release 2" in result.stdout and newest["bundle_id"] in result.stdout
    assert "tflite" in result.stderr and "parity" in result.stderr  # the convert display
    assert list(temp.iterdir()) == []  # the converted bundle and the tar were temporary


def test_push_of_a_bundle_then_a_refusal_exits_1_with_the_server_s_message(
    server: LiveServer, models: Models
) -> None:
    pushed = fedge("push", str(models.second.path), "--server", server.url, "--rollout", "5")
    again = fedge("push", str(models.second.path), "--server", server.url)

    assert pushed.exit_code == 0, pushed.output
    assert f"release 2 ({models.second.bundle_id})" in pushed.stdout
    assert again.exit_code == 1
    assert "already release 2" in again.output and "already_released" in again.output
    assert len(releases(server.url)) == 2


def test_a_wrong_or_missing_admin_token(server: LiveServer, models: Models) -> None:
    wrong = fedge("push", str(models.second.path), "--server", server.url, token="nope")
    missing = fedge("rollout", "10", "--why", "x", "--server", server.url, token=None)

    assert wrong.exit_code == 1
    assert "not_admin" in wrong.output
    assert missing.exit_code == 2
    assert "FEDGE_ADMIN_TOKEN" in missing.output
    assert len(releases(server.url)) == 1


def test_rollout_promote_releases_and_rollback(server: LiveServer, models: Models) -> None:
    assert fedge("push", str(models.second.path), "--server", server.url).exit_code == 0

    rollout = fedge("rollout", "60", "--why", "looks good", "--server", server.url)
    promote = fedge("promote", "2", "--why", "metrics hold", "--server", server.url)
    table = fedge("releases", "--server", server.url, token=None)
    rollback = fedge("rollback", "--why", "regression", "--to", "1", "--server", server.url)

    assert rollout.exit_code == 0, rollout.output
    assert "60" in rollout.stdout
    assert promote.exit_code == 0, promote.output
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert any("2" in line and "live" in line for line in lines), table.stdout
    assert any("1" in line and "retired" in line for line in lines), table.stdout
    assert rollback.exit_code == 0, rollback.output
    assert "release 1 is live" in rollback.stdout
    assert {r["version"]: r["state"] for r in releases(server.url)} == {
        1: "live",
        2: "rolled_back",
    }
    changes = requests.get(
        f"{server.url}/v1/admin/release-changes",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=30,
    ).json()["changes"]
    assert [(c["action"], c["why"]) for c in changes[:3]] == [
        ("rollback", "regression"),
        ("promote", "metrics hold"),
        ("rollout", "looks good"),
    ]


def test_release_and_releases_show_the_canary_s_evidence(
    server: LiveServer, models: Models
) -> None:
    assert fedge("push", str(models.second.path), "--server", server.url).exit_code == 0

    shown = fedge("release", "2", "--server", server.url, token=None)
    table = fedge("releases", "--server", server.url, token=None)
    missing = fedge("release", "9", "--server", server.url, token=None)

    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("release 2 (") and lines[0].endswith("canary for 10% of devices")
    assert (
        lines[1] == "canary: not enough evidence yet: 0 devices (0 examples, 0 reports); "
        "0 of at least 5 devices (canary_min_reports)"
    )
    assert "promote: e-value 1 against threshold 20 (not worse by the margin)" in lines[2]
    assert "rollback: e-value 1 against threshold 20 (worse than live)" in lines[3]
    assert "margin 0.05, alpha 0.05, beta 0.05" in lines[4]
    assert table.exit_code == 0, table.output
    assert "not enough evidence yet" in " ".join(table.stdout.split())
    assert missing.exit_code == 1
    assert "unknown_release" in missing.output
