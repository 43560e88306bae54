from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

from fedge.cli.main import main
from fedge.reference.data import TaskData


@pytest.mark.parametrize("command", sorted(main.commands))
def test_every_command_has_help(command: str) -> None:
    result = CliRunner().invoke(main, [command, "--help"])

    assert result.exit_code == 0, result.output
    assert "Usage: main" in result.output or "Usage: fedge" in result.output
    cmd = main.commands[command]
    assert isinstance(cmd, click.Command) and cmd.help


def test_console_script_is_installed() -> None:
    fedge = Path(sys.executable).parent / "fedge"

    result = subprocess.run([fedge, "--help"], capture_output=True, text=True, timeout=60)

    assert result.returncode == 0
    assert "train" in result.stdout


def test_train_rejects_an_unknown_model_format(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["train", "--out", str(tmp_path / "model.txt")])

    assert result.exit_code != 0
    assert "must end in .keras or .h5" in result.output
    assert not any(tmp_path.iterdir())


def test_fedge_train_on_the_public_part_writes_a_model_that_reaches_90_percent(
    tmp_path: Path, task: TaskData
) -> None:
    out = tmp_path / "model.keras"
    fedge = Path(sys.executable).parent / "fedge"

    result = subprocess.run(
        [fedge, "train", "--out", out], capture_output=True, text=True, timeout=300
    )

    assert result.returncode == 0, result.stderr
    printed = float(re.search(r"test accuracy: ([0-9.]+)", result.stdout).group(1))  # type: ignore[union-attr]
    # By default it trains on the public 30% of the training split (the
    # devices of fedge simulate hold the rest): 434 of 1,438 digits.
    assert "trained on 434 digits" in result.stdout
    assert printed >= 0.9
    import tensorflow as tf

    model = tf.keras.models.load_model(out)
    accuracy = float(np.mean(model.predict(task.test.x, verbose=0).argmax(axis=1) == task.test.y))
    assert accuracy == pytest.approx(printed, abs=1e-4)
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]
