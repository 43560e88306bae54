"""A token sequence input's vocabulary in the manifest (``vocabularies``),
from ``fedge convert --vocabulary [INPUT=]FILE``: id = index, padding and
out-of-vocabulary first, sealed with the manifest; refused, with what is
wrong, when it does not fit (nothing is written)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from fedge.bundle.manifest import ManifestError, open_bundle
from fedge.cli.main import main
from fedge.converters.source.vocabulary import check_vocabularies, read_vocabulary
from fedge.errors import ConfigError

INPUTS = [("tokens", (None, 8), "int32"), ("dense", (None, 3), "float32")]
TWO_SEQUENCES = [("a", (None, 4), "int32"), ("b", (None, 4), "int64")]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import tensorflow as tf

    tf.keras.utils.set_random_seed(3)
    inputs = tf.keras.Input((8,), dtype="int32", name="tokens")
    x = tf.keras.layers.Embedding(6, 4)(inputs)
    x = tf.keras.layers.GlobalAveragePooling1D()(x)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(2, activation="softmax")(x))
    root = tmp_path_factory.mktemp("vocabulary")
    model.save(root / "tokens.keras")
    # Ids the Embedding takes (random ones would be out of its range).
    np.save(root / "samples.npy", np.random.default_rng(3).integers(0, 6, (8, 8)).astype("i4"))
    return root / "tokens.keras"


def convert_args(model_path: Path, out: Path) -> list[str]:
    samples = str(model_path.parent / "samples.npy")
    return [
        *("convert", str(model_path), "--out", str(out), "--targets", "tflite"),
        *("--no-training", "--samples", samples),
    ]


def test_the_command_records_the_vocabulary_sealed(model_path: Path, tmp_path: Path) -> None:
    words = tmp_path / "words.txt"
    words.write_text("the\ncat\nsat\nmat\n\n")
    out = tmp_path / "bundle"
    args = [*convert_args(model_path, out), "--vocabulary", str(words)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    recorded = ["", "[UNK]", "the", "cat", "sat", "mat"]
    assert open_bundle(out).manifest.vocabularies == {"tokens": recorded}
    assert json.loads((out / "manifest.json").read_text())["vocabularies"] == {"tokens": recorded}
    # Sealed: an edited vocabulary no longer opens.
    manifest = out / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"mat"', '"hat"'))
    with pytest.raises(ManifestError):
        open_bundle(out)


def test_a_bundle_without_a_vocabulary_has_no_key(model_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "plain"
    result = CliRunner().invoke(main, convert_args(model_path, out))
    assert result.exit_code == 0, result.output
    assert "vocabularies" not in json.loads((out / "manifest.json").read_text())
    assert open_bundle(out).manifest.vocabularies == {}


def test_a_bad_vocabulary_is_refused_and_nothing_is_written(
    model_path: Path, tmp_path: Path
) -> None:
    words = tmp_path / "words.txt"
    words.write_text("the\nCat\n")
    out = tmp_path / "bundle"
    result = CliRunner().invoke(main, [*convert_args(model_path, out), "--vocabulary", str(words)])
    assert result.exit_code == 2
    assert "line 2 ('Cat') of 'tokens' is not a lowercase word" in result.output
    assert not out.exists()
    # The model's Embedding takes ids 0..5: four tokens at most.
    words.write_text("a\nb\nc\nd\ne\n")
    too_many = CliRunner().invoke(
        main, [*convert_args(model_path, out), "--vocabulary", str(words)]
    )
    assert too_many.exit_code == 2
    assert "7 ids for 'tokens'" in too_many.output
    assert "give at most 4 tokens" in too_many.output
    assert not out.exists()
    missing = CliRunner().invoke(
        main, [*convert_args(model_path, out), "--vocabulary", str(tmp_path / "none.txt")]
    )
    assert missing.exit_code == 2
    assert "cannot read" in missing.output
    assert not out.exists()


@pytest.mark.parametrize(
    ("inputs", "given", "message"),
    [
        (INPUTS, {"dense": ["a"]}, "'dense' is not an integer sequence input"),
        (INPUTS, {"nope": ["a"]}, "'nope' is not an integer sequence input"),
        (INPUTS, {"tokens": []}, "is empty"),
        (INPUTS, {"tokens": ["a", "b", "a"]}, "'a' of 'tokens' is given twice"),
        (INPUTS, {"tokens": ["a b"]}, "not a lowercase word"),
        (INPUTS, {"tokens": ["don't"]}, "not a lowercase word"),
        (INPUTS, {"tokens": ["snake_case"]}, "not a lowercase word"),
        (TWO_SEQUENCES, {"": ["a"]}, "2 integer sequence inputs"),
        (INPUTS, {"": ["a"], "tokens": ["b"]}, "'tokens' given twice"),
    ],
)
def test_vocabularies_that_do_not_fit_say_why(
    inputs: list[tuple[str, tuple[int | None, ...], str]],
    given: dict[str, list[str]],
    message: str,
) -> None:
    with pytest.raises(ConfigError, match=message):
        check_vocabularies(inputs, given)


def test_any_script_lowercase_words_and_digits_are_tokens(tmp_path: Path) -> None:
    words = tmp_path / "w.txt"
    words.write_text("café\nnaïve\n2024\n日本\n")
    tokens = read_vocabulary(words)
    assert check_vocabularies(INPUTS, {"": tokens}) == {"tokens": ["", "[UNK]", *tokens]}
