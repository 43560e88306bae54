"""Recurrent models in TFLite: stateless per call, any batch where possible,
outputs named as the flatbuffer's signature names them, and parity that
would catch a model that keeps state between calls."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import tensorflow as tf

from fedge.bundle.manifest import verify_bundle
from fedge.converters.bundle import convert
from fedge.converters.options import ConvertOptions, Tolerance
from fedge.converters.parity.compare import compare
from fedge.converters.targets import tflite
from tests.converters import zoo_rnn_custom as zoo

TFLITE_ONLY = ConvertOptions(targets=("tflite",), tflite_training=False)
RECURRENT = {
    "lstm": zoo.lstm_classifier,
    "bidirectional_gru": zoo.bidirectional_gru,
    "gru_reset_after": zoo.gru_reset_after,
}


def _sequences(rows: int, steps: int = zoo.STEPS) -> npt.NDArray[np.float32]:
    return np.random.default_rng(0).uniform(size=(rows, steps, zoo.FEATURES)).astype(np.float32)


def _signature_runner(path: Path) -> Any:
    interpreter = tf.lite.Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    return interpreter, interpreter.get_signature_runner()


def test_the_same_input_twice_through_one_interpreter_gives_keras_twice(tmp_path: Path) -> None:
    model = zoo.lstm_classifier()
    x = _sequences(1)
    expected = model.predict(x, verbose=0)
    artifact = tflite.export(model, tmp_path, TFLITE_ONLY)

    _, run = _signature_runner(tmp_path / artifact.entry)
    (first,) = run(sequence=x).values()
    (second,) = run(sequence=x).values()

    np.testing.assert_allclose(first, expected, atol=1e-6)
    np.testing.assert_allclose(second, expected, atol=1e-6)


@pytest.mark.parametrize("name", sorted(RECURRENT))
def test_fixed_length_recurrent_models_take_any_batch(name: str, tmp_path: Path) -> None:
    model = RECURRENT[name]()
    x = _sequences(7)
    artifact = tflite.export(model, tmp_path, TFLITE_ONLY)

    interpreter, _ = _signature_runner(tmp_path / artifact.entry)
    run = interpreter.get_signature_runner()
    got = run(sequence=x)["probs"]

    assert artifact.options["batch_size"] is None
    assert artifact.options["inputs"] == [
        {"name": "sequence", "shape": [None, zoo.STEPS, zoo.FEATURES], "dtype": "float32"}
    ]
    builtins = {op["op_name"] for op in interpreter._get_ops_details()}
    assert not builtins & {"UNIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_LSTM"}
    assert np.max(np.abs(got - model.predict(x, verbose=0))) <= 1e-5


def test_recurrent_outputs_are_named_as_the_signature_names_them(tmp_path: Path) -> None:
    model = zoo.lstm_classifier()
    artifact = tflite.export(model, tmp_path, TFLITE_ONLY)

    interpreter, _ = _signature_runner(tmp_path / artifact.entry)
    signature = interpreter.get_signature_list()["serving_default"]

    assert [o["name"] for o in artifact.options["outputs"]] == signature["outputs"] == ["probs"]
    assert [i["name"] for i in artifact.options["inputs"]] == signature["inputs"] == ["sequence"]


def test_variable_length_sequences_keep_batch_one_and_the_bundle_says_so(tmp_path: Path) -> None:
    path = zoo.save(zoo.variable_length_lstm(), tmp_path / "varlen.keras")
    x = _sequences(3, steps=7)
    np.save(tmp_path / "x.npy", x)
    options = ConvertOptions(
        targets=("tflite",), tflite_training=False, samples_path=tmp_path / "x.npy"
    )

    result = convert(path, tmp_path / "b", options)

    manifest = verify_bundle(tmp_path / "b")
    record = manifest.artifacts["tflite"]
    assert not result.failed and manifest.parity["tflite"]["status"] == "pass"
    assert record["batch_size"] == 1
    assert record["inputs"][0]["shape"] == [1, None, zoo.FEATURES]
    assert any("batch of 1" in note for note in record["notes"])
    card = (tmp_path / "b" / "MODEL_CARD.md").read_text()
    assert "batch of 1" in card
    _, run = _signature_runner(tmp_path / "b" / record["entry"])
    once, again = run(sequence=x[:1])["out"], run(sequence=x[:1])["out"]
    np.testing.assert_array_equal(once, again)


def _stateful_lstm_flatbuffer(model: Any) -> bytes:
    """The LSTM at a fixed batch of 1 through TFLite's fused kernel, which
    keeps its state in variables between invocations (what fedge used to ship)."""
    spec = tf.TensorSpec((1, zoo.STEPS, zoo.FEATURES), tf.float32, name="sequence")
    function = tf.function(lambda x: {"probs": model(x)}).get_concrete_function(spec)
    return bytes(tf.lite.TFLiteConverter.from_concrete_functions([function], model).convert())


def test_parity_fails_a_model_that_keeps_state_between_calls(tmp_path: Path) -> None:
    model = zoo.lstm_classifier()
    (tmp_path / "tflite").mkdir()
    (tmp_path / "tflite" / "model.tflite").write_bytes(_stateful_lstm_flatbuffer(model))
    record = {
        "entry": "tflite/model.tflite",
        "inputs": ["sequence"],
        "outputs": ["probs"],
        "batch_size": 1,
    }
    x = np.concatenate([_sequences(2)] * 3)  # two sequences, each three times

    got = tflite.load_predictor(tmp_path, record).predict([x])
    report = compare([model.predict(x, verbose=0)], got, Tolerance(max_abs_err=1e-4), "fp32")

    assert report.status == "fail", report.reason
