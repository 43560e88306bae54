"""A functional model whose outputs are a dict: every target converts, each
named output is checked against Keras's output of the same name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedge.bundle.manifest import verify_bundle
from fedge.converters.batch_predict import predict_bundle
from fedge.converters.bundle import convert
from fedge.converters.options import ConvertOptions
from fedge.converters.source.model_io import output_specs
from fedge.converters.targets.keras_target import KerasPredictor
from tests.converters import zoo_rnn_custom as zoo

NAMES = ["probs", "score"]  # Keras's order: the dict's keys, sorted


def test_outputs_are_the_dicts_keys_in_keras_order() -> None:
    model = zoo.dict_output_model()
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)

    got = KerasPredictor(model).predict([x])

    expected = model.predict(x, verbose=0)
    assert [name for name, _, _ in output_specs(model)] == NAMES
    assert len(got) == 2
    for array, name in zip(got, NAMES, strict=True):
        np.testing.assert_array_equal(array, expected[name])


@pytest.mark.parametrize("target", ["tflite", "tfjs", "coreml"])
def test_a_dict_output_model_converts_with_each_named_output_checked(
    target: str, tmp_path: Path
) -> None:
    model = zoo.dict_output_model()
    path = zoo.save(model, tmp_path / "dict.keras")
    options = ConvertOptions(targets=(target,), coreml_precision="fp32", max_samples=32)
    x = np.random.default_rng(2).normal(size=(12, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)

    result = convert(path, tmp_path / "b", options)
    manifest, outputs = predict_bundle(tmp_path / "b", target, tmp_path / "x.npy")

    assert not result.failed, result.manifest.failures
    assert manifest.parity[target]["status"] == "pass", manifest.parity[target]
    assert [spec.name for spec in verify_bundle(tmp_path / "b").outputs] == NAMES
    expected = model.predict(x, verbose=0)
    for array, name in zip(outputs, NAMES, strict=True):
        assert np.max(np.abs(array - expected[name])) <= 1e-4, name
