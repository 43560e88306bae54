"""What a user reads when Core ML fails: the card names the target once, the
error points at full precision, and labels follow the model's columns."""

from __future__ import annotations

from pathlib import Path

import pytest
import tensorflow as tf

from fedge.converters.bundle import convert
from fedge.converters.errors import TargetFailedError
from fedge.converters.options import ConvertOptions, Tolerance
from fedge.converters.targets.coreml import export
from tests.converters.zoo_coreml import regressor


@pytest.fixture(scope="module")
def regressor_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("messages") / "regressor.keras"
    regressor().save(path)
    return path


def test_a_failed_target_is_named_once_in_the_card(regressor_path: Path, tmp_path: Path) -> None:
    options = ConvertOptions(
        targets=("tflite", "coreml"),
        tflite_training=False,
        tolerances={"fp16": Tolerance(max_abs_err=1e-9)},  # no fp16 model is that close
    )

    result = convert(regressor_path, tmp_path / "b", options)

    card = (tmp_path / "b" / "MODEL_CARD.md").read_text()
    (failed,) = result.failed
    assert failed.target == "coreml"
    assert failed.error is not None
    assert failed.error.endswith("; --coreml-precision fp32 converts at full precision")
    assert "coreml: coreml:" not in card
    assert f"- {failed.error}\n" in card


def test_labels_name_the_columns_of_a_logits_model(tmp_path: Path) -> None:
    inputs = tf.keras.Input((4,), name="x")
    logits = tf.keras.layers.Dense(3, name="logits")(inputs)  # no softmax
    model = tf.keras.Model(inputs, logits, name="logits_model")

    artifact = export(model, tmp_path, ConvertOptions(labels=("a", "b", "c")))

    assert artifact.options["labels"] == ["a", "b", "c"]
    assert artifact.options["classifier"] is False


def test_labels_for_another_number_of_classes_are_refused(tmp_path: Path) -> None:
    inputs = tf.keras.Input((4,), name="x")
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(3, activation="softmax")(inputs))

    with pytest.raises(TargetFailedError, match="2 labels for 3 classes"):
        export(model, tmp_path, ConvertOptions(labels=("a", "b")))
