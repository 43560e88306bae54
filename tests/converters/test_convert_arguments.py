"""``fedge convert`` refuses bad arguments with exit 2 (as the README says)
and a message naming the argument, before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest
import tensorflow as tf
from click.testing import CliRunner, Result

from fedge.cli.main import main


@pytest.fixture(scope="module")
def ten_classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tf.keras.utils.set_random_seed(50)
    inputs = tf.keras.Input((4,), name="x")
    probs = tf.keras.layers.Dense(10, activation="softmax", name="probs")(inputs)
    path = tmp_path_factory.mktemp("args") / "ten.keras"
    tf.keras.Model(inputs, probs, name="ten").save(path)
    return path


def convert(model: Path, out: Path, *args: str) -> Result:
    return CliRunner().invoke(
        main, ["convert", str(model), "--out", str(out), "--no-verify", "--no-training", *args]
    )


def assert_bad_argument(result: Result, message: str) -> None:
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()), result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--targets", "onnx"), "unknown target(s) ['onnx']; choose from tflite, tfjs, coreml"),
        (("--targets", " , "), "no target given"),
        (("--coreml-target", "iOS99"), "--coreml-target must be one of iOS15, iOS16,"),
    ],
)
def test_a_bad_target_exits_2(
    ten_classes: Path, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    result = convert(ten_classes, tmp_path / "b", *args)

    assert_bad_argument(result, message)
    assert sorted(tmp_path.iterdir()) == []


def test_labels_must_name_every_class(ten_classes: Path, tmp_path: Path) -> None:
    result = convert(ten_classes, tmp_path / "b", "--targets", "tflite", "--labels", "a,b,c")

    assert_bad_argument(
        result, "--labels: 3 labels for 10 classes (output 'probs' has shape (None, 10))"
    )
    assert sorted(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ("a,,c,d,e,f,g,h,i,j", "--labels: label 2 is empty"),
        ("a,b,a,d,e,f,g,h,i,j", "--labels: 'a' is given twice"),
    ],
)
def test_labels_must_be_distinct_and_named(
    ten_classes: Path, tmp_path: Path, labels: str, message: str
) -> None:
    result = convert(ten_classes, tmp_path / "b", "--targets", "tflite", "--labels", labels)

    assert_bad_argument(result, message)


def test_ten_labels_for_ten_classes_are_kept(ten_classes: Path, tmp_path: Path) -> None:
    labels = ",".join(f"digit {i}" for i in range(10))

    result = convert(ten_classes, tmp_path / "b", "--targets", "tflite", "--labels", labels)

    assert result.exit_code == 0, result.output
    assert "digit 9" in (tmp_path / "b" / "manifest.json").read_text()


def test_a_model_file_that_does_not_exist_is_a_usage_error(tmp_path: Path) -> None:
    result = convert(tmp_path / "missing.keras", tmp_path / "b")

    assert_bad_argument(result, "'MODEL': Path")
    assert_bad_argument(result, "missing.keras' does not exist")
    assert not (tmp_path / "b").exists()
