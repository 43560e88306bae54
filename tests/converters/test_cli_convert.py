"""``fedge convert`` and ``fedge predict`` from the command line."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import tensorflow as tf
from click.testing import CliRunner

from fedge.cli.main import main
from fedge.reference.data import load_task


def test_convert_then_predict_with_tflite_and_keras(
    trained_model_path: Path, tmp_path: Path
) -> None:
    bundle = tmp_path / "bundle"
    runner = CliRunner()

    converted = runner.invoke(
        main, ["convert", str(trained_model_path), "--out", str(bundle), "--targets", "tflite"]
    )

    assert converted.exit_code == 0, converted.output
    assert "tflite" in converted.output and "pass" in converted.output
    test = load_task().test
    inputs = tmp_path / "inputs.npy"
    np.save(inputs, test.x[:20])
    predicted = runner.invoke(
        main,
        [
            "predict",
            str(bundle),
            str(inputs),
            "--runtime",
            "tflite",
            "--out",
            str(tmp_path / "p.npy"),
        ],
    )
    assert predicted.exit_code == 0, predicted.output
    got = np.load(tmp_path / "p.npy")
    expected = tf.keras.models.load_model(trained_model_path).predict(test.x[:20], verbose=0)
    np.testing.assert_allclose(got, expected, atol=1e-4)

    flat = tmp_path / "inputs.csv"
    np.savetxt(flat, test.x[:5].reshape(5, -1), delimiter=",")
    as_csv = runner.invoke(
        main,
        ["predict", str(bundle), str(flat), "--runtime", "keras", "--out", str(tmp_path / "p.csv")],
    )
    assert as_csv.exit_code == 0, as_csv.output
    with (tmp_path / "p.csv").open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == [*"0123456789", "predicted"]
    assert [r[-1] for r in rows[1:]] == [str(int(d)) for d in expected[:5].argmax(axis=1)]


def _tflite_bundle(runner: CliRunner, model: Path, out: Path) -> None:
    """A quick TFLite-only bundle (no parity, no training artifact)."""
    result = runner.invoke(
        main,
        [
            "convert",
            str(model),
            "--out",
            str(out),
            "--targets",
            "tflite",
            "--no-verify",
            "--no-training",
        ],
    )
    assert result.exit_code == 0, result.output


def test_predict_refuses_a_runtime_the_bundle_lacks(
    trained_model_path: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    _tflite_bundle(runner, trained_model_path, tmp_path / "b")
    np.save(tmp_path / "x.npy", np.zeros((2, 8, 8, 1), np.float32))

    result = runner.invoke(
        main,
        [
            "predict",
            str(tmp_path / "b"),
            str(tmp_path / "x.npy"),
            "--runtime",
            "coreml",
            "--out",
            str(tmp_path / "p.npy"),
        ],
    )

    assert result.exit_code != 0
    assert "has no 'coreml' artifact (it has: keras, tflite, weights)" in result.output
    assert not (tmp_path / "p.npy").exists()


def test_predict_rejects_inputs_of_the_wrong_shape(
    trained_model_path: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    _tflite_bundle(runner, trained_model_path, tmp_path / "b")
    np.save(tmp_path / "x.npy", np.zeros((2, 7, 7, 1), np.float32))

    result = runner.invoke(
        main,
        ["predict", str(tmp_path / "b"), str(tmp_path / "x.npy"), "--out", str(tmp_path / "p.npy")],
    )

    assert result.exit_code != 0
    assert "has shape (2, 7, 7, 1), the model takes (None, 8, 8, 1)" in result.output


def test_convert_rejects_an_unknown_target(trained_model_path: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["convert", str(trained_model_path), "--out", str(tmp_path / "b"), "--targets", "onnx"],
    )

    assert result.exit_code != 0
    assert "unknown target(s) ['onnx']" in result.output
    assert not (tmp_path / "b").exists()
