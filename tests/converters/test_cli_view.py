"""What ``fedge convert`` prints: sizes of what each runtime loads, and
lines that are not cut at 80 columns when the output is not a terminal."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import tensorflow as tf
from click.testing import CliRunner
from rich.console import Console

from fedge.cli.console import make_console
from fedge.cli.main import main
from fedge.converters.bundle import BundleResult, convert
from fedge.converters.cli_view import summary_table
from fedge.converters.options import ConvertOptions


def _classifier() -> Any:
    tf.keras.utils.set_random_seed(40)
    inputs = tf.keras.Input((6,), name="features")
    hidden = tf.keras.layers.Dense(16, activation="relu", name="hidden")(inputs)
    probs = tf.keras.layers.Dense(3, activation="softmax", name="probs")(hidden)
    model = tf.keras.Model(inputs, probs, name="three_classes")
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    return model


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("view") / "three.keras"
    _classifier().save(path)
    return path


@pytest.fixture(scope="module")
def converted(model_path: Path) -> BundleResult:
    options = ConvertOptions(targets=("tflite",), verify=False)
    return convert(model_path, model_path.parent / "bundle", options)


def _row(text: str, target: str) -> list[str]:
    line = next(line for line in text.splitlines() if re.match(rf"\W*{target}\s", line))
    return [cell.strip() for cell in re.split(r"[│┃]", line) if cell.strip()]


def _kib(path: Path) -> str:
    return f"{path.stat().st_size / 1024:.1f} KiB"


def test_the_size_column_shows_each_model_alone(converted: BundleResult) -> None:
    console = Console(record=True, width=200)
    console.print(summary_table(converted))
    text = console.export_text()
    tflite_dir = converted.path / "tflite"

    assert (tflite_dir / "train.tflite").is_file()
    assert _row(text, "tflite")[2] == _kib(tflite_dir / "model.tflite")
    assert _row(text, "tflite-train")[2] == _kib(tflite_dir / "train.tflite")


def test_a_console_that_is_not_a_terminal_is_wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)

    assert make_console().width >= 200
    monkeypatch.setenv("COLUMNS", "120")  # the user's choice wins
    assert make_console(stderr=True).width == 120


def test_convert_lines_are_not_cut_in_a_log(model_path: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["convert", str(model_path), "--out", str(tmp_path / "b"), "--targets", "tflite"]
    )

    assert result.exit_code == 0, result.output
    assert "…" not in result.output  # rich's mark of a cut line
    assert re.search(r"tflite: parity pass \(max abs error [^)]+ on \d+ samples\)", result.output)
