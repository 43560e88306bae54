"""A plain SavedModel (a ``tf.Module`` with a serving signature, not Keras):
TFLite, a TF.js graph model and Core ML, each checked against the
signature itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from fedge.bundle.manifest import verify_bundle
from fedge.converters.batch_predict import predict_bundle
from fedge.converters.bundle import convert
from fedge.converters.options import ConvertOptions
from tests.converters import zoo_rnn_custom as zoo


def test_a_plain_saved_model_converts_and_is_checked_against_its_signature(
    tmp_path: Path,
) -> None:
    path = zoo.save_plain_saved_model(tmp_path)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(10, 4)).astype(np.float32)
    bias = rng.normal(size=(10, 2)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x, bias=bias)
    options = ConvertOptions(targets=("tflite", "tfjs", "coreml"), max_samples=32)

    result = convert(path, tmp_path / "b", options)

    manifest = verify_bundle(tmp_path / "b")
    assert [s.name for s in manifest.inputs] == ["bias", "x"]
    assert [(s.name, s.shape) for s in manifest.outputs] == [("total", (None, 1)), ("y", (None, 3))]
    assert manifest.artifacts["keras"]["format"] == "saved-model"
    assert manifest.artifacts["tfjs"]["format"] == "graph-model"
    assert manifest.artifacts["tflite"]["training"] is None
    for target in ("tflite", "tfjs"):
        assert manifest.parity[target]["status"] == "pass", manifest.parity[target]
        assert manifest.parity[target]["max_abs_err"] <= 1e-5
    # Core ML (fp16 by default) is judged against the output range.
    assert manifest.parity["coreml"]["status"] == "pass", manifest.parity["coreml"]["reason"]
    assert manifest.artifacts["coreml"]["output_names"] == ["total", "y"]
    assert not result.failed
    signature = tf.saved_model.load(str(path)).signatures["serving_default"]
    expected = signature(x=tf.constant(x), bias=tf.constant(bias))
    for runtime in ("keras", "tflite", "tfjs"):
        _, got = predict_bundle(tmp_path / "b", runtime, tmp_path / "in.npz")
        assert np.max(np.abs(got[0] - expected["total"].numpy())) <= 1e-5, runtime
        assert np.max(np.abs(got[1] - expected["y"].numpy())) <= 1e-5, runtime
    assert sorted(manifest.weights.names) == ["v", "w"]
