"""The TFLite training artifact: the loss the model was compiled with (or
``--loss``), named in the manifest and the card; a step that does not match
Keras's is a failure like any other; a model that gets no artifact says why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import tensorflow as tf
from click.testing import CliRunner
from rich.console import Console

from fedge.bundle.manifest import verify_bundle
from fedge.cli.main import main
from fedge.converters.bundle import BundleResult, convert
from fedge.converters.cli_view import summary_table
from fedge.converters.errors import ConversionError
from fedge.converters.options import ConvertOptions, Tolerance
from tests.converters.zoo_users import (
    constant_classifier,
    constrained_classifier,
    logits_classifier,
    regularized_classifier,
    save,
    two_output_model,
)

TFLITE = ConvertOptions(targets=("tflite",))


def _summary_text(result: BundleResult) -> str:
    console = Console(record=True, width=400)
    console.print(summary_table(result))
    return console.export_text()


def _batch(rows: int = 16) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int32]]:
    rng = np.random.default_rng(7)
    x = rng.normal(0.0, 1.0, (rows, 6)).astype(np.float32)
    return x, rng.integers(0, 3, rows).astype(np.int32)


def _tflite_step(
    bundle: Path, training: dict[str, Any], weights: list[Any], x: Any, y: Any, lr: float
) -> list[Any]:
    interpreter = tf.lite.Interpreter(model_path=str(bundle / training["path"]))
    keys = training["weight_keys"]
    interpreter.get_signature_runner("set_weights")(**dict(zip(keys, weights, strict=True)))
    interpreter.get_signature_runner("train")(features=x, label=y, learning_rate=np.float32(lr))
    got = interpreter.get_signature_runner("get_weights")()
    return [got[k] for k in keys]


def _max_diff(a: list[Any], b: list[Any]) -> float:
    return max(float(np.max(np.abs(u - v))) for u, v in zip(a, b, strict=True))


def test_the_training_step_is_keras_s_step_with_the_compiled_loss(tmp_path: Path) -> None:
    path = save(logits_classifier(learning_rate=0.1), tmp_path)
    x, y = _batch()

    result = convert(path, tmp_path / "b", TFLITE)

    training = result.manifest.artifacts["tflite"]["training"]
    assert training["loss"] == "sparse_categorical_crossentropy"
    assert training["from_logits"] is True
    assert training["loss_source"] == "compiled"
    assert training["learning_rate"] == pytest.approx(0.1)
    assert result.manifest.parity["tflite_train"]["status"] == "pass"
    # Keras's own step, with the model exactly as compiled and saved.
    keras = tf.keras.models.load_model(path)
    before = keras.get_weights()
    keras.train_on_batch(x, y)
    got = _tflite_step(tmp_path / "b", training, before, x, y, 0.1)
    assert _max_diff(got, keras.get_weights()) <= 1e-5
    # The mean-squared-error step fedge used to take is far from it.
    mse = tf.keras.models.clone_model(keras)
    mse.set_weights(before)
    mse.compile(optimizer=tf.keras.optimizers.SGD(0.1), loss="mse")
    mse.train_on_batch(x, tf.one_hot(y, 3))
    assert _max_diff(mse.get_weights(), keras.get_weights()) > 1e-3
    card = (tmp_path / "b" / "MODEL_CARD.md").read_text()
    assert "loss sparse_categorical_crossentropy (from logits), as compiled" in card
    assert "loss sparse_categorical_crossentropy (from logits), as compiled" in _summary_text(
        result
    )


def test_the_regularisation_penalty_is_part_of_the_training_loss(tmp_path: Path) -> None:
    path = save(regularized_classifier(), tmp_path)
    x, y = _batch()

    result = convert(path, tmp_path / "b", TFLITE)

    training = result.manifest.artifacts["tflite"]["training"]
    keras = tf.keras.models.load_model(path)
    before = keras.get_weights()
    keras.train_on_batch(x, y)
    got = _tflite_step(tmp_path / "b", training, before, x, y, 0.05)
    assert _max_diff(got, keras.get_weights()) <= 1e-5
    assert result.manifest.parity["tflite_train"]["status"] == "pass"


def test_loss_option_overrides_the_compiled_loss(tmp_path: Path) -> None:
    path = save(logits_classifier(), tmp_path)
    options = ConvertOptions(targets=("tflite",), loss="mse")

    result = convert(path, tmp_path / "b", options)

    training = result.manifest.artifacts["tflite"]["training"]
    assert (training["loss"], training["from_logits"], training["loss_source"]) == (
        "mean_squared_error",
        False,
        "--loss",
    )
    assert result.manifest.parity["tflite_train"]["status"] == "pass"


def test_an_uncompiled_model_s_loss_is_said_to_be_a_guess(tmp_path: Path) -> None:
    path = save(constant_classifier(), tmp_path)

    convert(path, tmp_path / "b", TFLITE)

    training = verify_bundle(tmp_path / "b").artifacts["tflite"]["training"]
    card = (tmp_path / "b" / "MODEL_CARD.md").read_text()
    assert training["loss"] == "sparse_categorical_crossentropy"
    assert training["loss_source"] == "guessed: not compiled; the last layer is a softmax"
    assert "guessed: not compiled; the last layer is a softmax (give --loss)" in card


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--loss", "mse", "--from-logits"], "--from-logits needs a cross-entropy --loss"),
        (["--loss", "hinge"], "'hinge' is not one of"),
        (["--loss", "mse", "--no-training"], "--loss is only used by the training artifact"),
    ],
    ids=["logits-mse", "unknown", "no-training"],
)
def test_bad_loss_options_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    path = save(logits_classifier(), tmp_path)

    result = CliRunner().invoke(
        main, ["convert", str(path), "--out", str(tmp_path / "b"), "--targets", "tflite", *args]
    )

    assert result.exit_code == 2, result.output
    assert message in result.output


def test_a_two_output_model_says_it_gets_no_training_artifact(tmp_path: Path) -> None:
    path = save(two_output_model(), tmp_path)

    result = convert(path, tmp_path / "b", TFLITE)

    record = verify_bundle(tmp_path / "b").artifacts["tflite"]
    reason = "the model has 2 outputs; train.tflite is made for one-output models"
    assert record["training"] is None
    assert record["training_skipped"] == reason
    assert f"No training artifact: {reason}." in (tmp_path / "b" / "MODEL_CARD.md").read_text()
    assert f"no training artifact: {reason}" in _summary_text(result)
    assert not result.failed


def test_a_training_step_that_misses_keras_is_a_failure_and_not_shipped(tmp_path: Path) -> None:
    path = save(constrained_classifier(), tmp_path)

    result = convert(path, tmp_path / "b", TFLITE)

    manifest = verify_bundle(tmp_path / "b")
    assert [o.target for o in result.failed] == ["tflite_train"]
    assert manifest.parity["tflite_train"]["status"] == "fail"
    assert manifest.failures["tflite_train"].startswith("tflite_train: parity FAILED: weights")
    assert manifest.artifacts["tflite"]["training"] is None
    assert "failed" in manifest.artifacts["tflite"]["training_skipped"]
    assert not (tmp_path / "b" / "tflite" / "train.tflite").exists()
    # The inference model passed its own parity and ships.
    assert manifest.parity["tflite"]["status"] == "pass"
    assert (tmp_path / "b" / "tflite" / "model.tflite").is_file()


def test_strict_writes_no_bundle_when_the_training_step_fails(tmp_path: Path) -> None:
    path = save(constrained_classifier(), tmp_path)

    with pytest.raises(ConversionError, match=r"tflite_train: parity FAILED"):
        convert(path, tmp_path / "b", ConvertOptions(targets=("tflite",), strict=True))

    assert not (tmp_path / "b").exists()


def test_the_cli_exits_1_for_a_failed_training_step_and_keep_failed_marks_it(
    tmp_path: Path,
) -> None:
    path = save(constrained_classifier(), tmp_path)
    runner = CliRunner()
    base = ["convert", str(path), "--targets", "tflite"]

    dropped = runner.invoke(main, [*base, "--out", str(tmp_path / "dropped")])
    kept = runner.invoke(main, [*base, "--out", str(tmp_path / "kept"), "--keep-failed"])

    assert dropped.exit_code == 1, dropped.output
    assert "without: tflite_train" in dropped.output
    assert kept.exit_code == 1, kept.output
    training = verify_bundle(tmp_path / "kept").artifacts["tflite"]["training"]
    assert training["verified"] is False
    assert training["failure"].startswith("tflite_train: parity FAILED")
    assert (tmp_path / "kept" / training["path"]).is_file()


def test_a_training_tolerance_override_is_used_and_recorded(tmp_path: Path) -> None:
    path = save(constrained_classifier(), tmp_path)
    loose = ConvertOptions(
        targets=("tflite",), target_tolerances={"tflite_train": Tolerance(max_abs_err=10.0)}
    )

    result = convert(path, tmp_path / "b", loose)

    record = result.manifest.parity["tflite_train"]
    assert record["status"] == "pass"
    assert record["tolerance"]["max_abs_err"] == 10.0
    assert not result.failed
