"""``fedge predict`` on inputs and outputs it cannot take: a message and
exit 2, never a traceback, and nothing changed on disk."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner, Result

from fedge.bundle.manifest import MANIFEST_FILE
from fedge.cli.main import main

VOCABULARY = 20
QUICK = ("--no-verify", "--no-training")

layers = tf.keras.layers


def _embedding_model() -> Any:
    """Five token ids in 0..19 to three classes."""
    tf.keras.utils.set_random_seed(20)
    tokens = tf.keras.Input((5,), name="tokens", dtype="int32")
    x = layers.Embedding(VOCABULARY, 4, name="embed")(tokens)
    x = layers.GlobalAveragePooling1D(name="pool")(x)
    return tf.keras.Model(tokens, layers.Dense(3, activation="softmax", name="probs")(x))


def _dense_model() -> Any:
    tf.keras.utils.set_random_seed(21)
    features = tf.keras.Input((4,), name="features")
    return tf.keras.Model(features, layers.Dense(2, name="scores")(features), name="dense")


def _bundle(model: Any, root: Path, targets: str) -> Path:
    path, out = root / f"{model.name}.keras", root / f"{model.name}-bundle"
    model.save(path)
    result = CliRunner().invoke(
        main,
        ["convert", str(path), "--out", str(out), "--targets", targets, *QUICK],
    )
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def tokens_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _bundle(_embedding_model(), tmp_path_factory.mktemp("tokens"), "tflite,tfjs")


@pytest.fixture(scope="module")
def dense_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _bundle(_dense_model(), tmp_path_factory.mktemp("dense"), "tflite")


def predict(bundle: Path, inputs: Path, out: Path, *extra: str) -> Result:
    return CliRunner().invoke(
        main, ["predict", str(bundle), str(inputs), "--out", str(out), *extra]
    )


def assert_refused(result: Result, message: str, code: int = 2) -> None:
    """A clean error: the message, the exit code, no traceback."""
    assert isinstance(result.exception, SystemExit), result.exception  # not a traceback
    assert result.exit_code == code, result.output
    assert message in " ".join(result.output.split()), result.output


def test_strings_are_refused(tokens_bundle: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "words.npy", np.array([["the", "cat", "sat", "on", "it"]]))

    result = predict(tokens_bundle, tmp_path / "words.npy", tmp_path / "p.npy")

    assert_refused(
        result,
        "input 'tokens' takes int32 numbers, but the file holds strings (<U3); "
        "map them to numbers (token ids) first",
    )
    assert not (tmp_path / "p.npy").exists()


@pytest.mark.parametrize("runtime", ["tflite", "keras", "tfjs"])
@pytest.mark.parametrize("bad_id", [VOCABULARY + 5, -1])
def test_token_ids_outside_the_vocabulary_are_refused(
    tokens_bundle: Path, tmp_path: Path, runtime: str, bad_id: int
) -> None:
    np.save(tmp_path / "ids.npy", np.array([[1, 2, bad_id, 3, 4]], np.int32))

    result = predict(tokens_bundle, tmp_path / "ids.npy", tmp_path / "p.npy", "--runtime", runtime)

    assert_refused(result, f"{runtime} could not run on ")
    assert "index out of range" in result.output
    assert f"'tokens' holds values from {min(bad_id, 1)} to {max(bad_id, 4)}" in result.output
    assert "conversion failed" not in result.output  # it is predict that failed
    assert not (tmp_path / "p.npy").exists()


def test_an_empty_input_is_refused(dense_bundle: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "none.npy", np.zeros((0, 4), np.float32))

    result = predict(dense_bundle, tmp_path / "none.npy", tmp_path / "p.npy")

    assert_refused(result, "no rows")
    assert not (tmp_path / "p.npy").exists()


def test_nan_inputs_are_refused_and_an_existing_output_is_left_alone(
    dense_bundle: Path, tmp_path: Path
) -> None:
    x = np.ones((3, 4), np.float32)
    x[1, 2] = np.nan
    x[2, 0] = np.inf
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "p.npy").write_bytes(b"yesterday's predictions")

    result = predict(dense_bundle, tmp_path / "x.npy", tmp_path / "p.npy")

    assert_refused(
        result, "input 'features' has 2 values that are NaN or infinite (first in row 1)"
    )
    assert (tmp_path / "p.npy").read_bytes() == b"yesterday's predictions"


def test_a_missing_output_directory_is_not_created(dense_bundle: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.ones((2, 4), np.float32))
    out = tmp_path / "no" / "such" / "dir" / "p.npy"

    result = predict(dense_bundle, tmp_path / "x.npy", out)

    assert_refused(result, f"the directory {out.parent} does not exist; create it first")
    assert not (tmp_path / "no").exists()


def test_an_unknown_output_format_is_refused_before_predicting(
    dense_bundle: Path, tmp_path: Path
) -> None:
    np.save(tmp_path / "x.npy", np.ones((2, 4), np.float32))

    result = predict(dense_bundle, tmp_path / "x.npy", tmp_path / "p.parquet")

    assert_refused(result, "--out p.parquet: write .npy, .npz or .csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]


def test_predictions_name_the_bundle_id(dense_bundle: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.ones((2, 4), np.float32))
    bundle_id = hashlib.sha256((dense_bundle / MANIFEST_FILE).read_bytes()).hexdigest()

    result = predict(dense_bundle, tmp_path / "x.npy", tmp_path / "p.npy", "--bundle-id", bundle_id)

    assert result.exit_code == 0, result.output
    assert f"bundle dense v1 (id {bundle_id})" in result.output
    assert np.load(tmp_path / "p.npy").shape == (2, 2)


def test_a_bundle_that_is_not_the_published_one_is_refused(
    dense_bundle: Path, tmp_path: Path
) -> None:
    np.save(tmp_path / "x.npy", np.ones((2, 4), np.float32))

    result = predict(dense_bundle, tmp_path / "x.npy", tmp_path / "p.npy", "--bundle-id", "ab" * 32)

    assert_refused(result, "is not the expected abab", code=1)
    assert not (tmp_path / "p.npy").exists()
