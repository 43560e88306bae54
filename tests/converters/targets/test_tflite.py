"""The TFLite target: inference parity, quantization, the training artifact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import tensorflow as tf

from fedge.converters.errors import UnsupportedLayerError
from fedge.converters.options import ConvertOptions
from fedge.converters.parity.samples import load_samples
from fedge.converters.parity.training import check_train_step
from fedge.converters.source.model_io import load_keras_model
from fedge.converters.targets import tflite
from fedge.wire.weight_spec import ModelSpec
from tests.model_zoo import ZOO, separable_bn_cnn

FP32_ONLY = ConvertOptions(targets=("tflite",), tflite_training=False)


def _export_and_predict(model: Any, bundle: Path, options: ConvertOptions) -> tuple[Any, ...]:
    artifact = tflite.export(model, bundle, options)
    record = {"entry": artifact.entry, **artifact.options}
    samples = load_samples(model, max_samples=64)
    got = tflite.load_predictor(bundle, record).predict(samples.arrays)
    feed = list(samples.arrays) if len(samples.arrays) > 1 else samples.arrays[0]
    return artifact, got[0], model.predict(feed, verbose=0)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_fp32_matches_keras_for_every_architecture(name: str, tmp_path: Path) -> None:
    model = ZOO[name]()

    artifact, got, expected = _export_and_predict(model, tmp_path, FP32_ONLY)

    assert np.max(np.abs(got - expected)) <= 1e-4
    assert (tmp_path / artifact.entry).stat().st_size == artifact.files[0].bytes


def test_fixed_length_recurrent_models_take_any_batch(tmp_path: Path) -> None:
    # Unrolled: no fused kernel, no state between calls, no fixed batch
    # (tests/converters/test_models_rnn.py has the details).
    artifact = tflite.export(ZOO["lstm_classifier"](), tmp_path, FP32_ONLY)

    assert artifact.options["batch_size"] is None


@pytest.mark.parametrize(
    ("mode", "max_size_ratio", "min_top1"),
    [("fp16", 0.55, 0.99), ("dynamic", 0.30, 0.97), ("int8", 0.30, 0.97)],
)
def test_quantized_models_are_smaller_and_agree(
    mode: str,
    max_size_ratio: float,
    min_top1: float,
    trained_model_path: Path,
    tmp_path: Path,
) -> None:
    model = load_keras_model(trained_model_path)
    fp32 = tflite.export(model, tmp_path / "fp32", FP32_ONLY)
    options = ConvertOptions(targets=("tflite",), tflite_training=False, tflite_quantize=mode)

    artifact, got, expected = _export_and_predict(model, tmp_path / mode, options)

    assert artifact.total_bytes <= max_size_ratio * fp32.total_bytes
    assert np.mean(got.argmax(axis=1) == expected.argmax(axis=1)) >= min_top1
    assert artifact.options["quantization"] == mode


def _int8_calibrated_on(
    model: Any, calibration: npt.NDArray[np.float32], bundle: Path
) -> tuple[float, int, float, float]:
    """Export int8 calibrated on ``calibration``; return the scale and zero
    point of the int8 copy of the (float) 8x8x1 input, and the top-1
    agreement and largest absolute error against Keras."""
    path = bundle.with_suffix(".npy")
    np.save(path, calibration)
    options = ConvertOptions(
        targets=("tflite",), tflite_training=False, tflite_quantize="int8", calibration_path=path
    )
    artifact, got, expected = _export_and_predict(model, bundle, options)
    interpreter = tf.lite.Interpreter(model_path=str(bundle / artifact.entry))
    interpreter.allocate_tensors()
    quantized = [
        d
        for d in interpreter.get_tensor_details()
        if d["dtype"] == np.int8 and tuple(d["shape"]) == (1, 8, 8, 1)
    ]
    assert len(quantized) == 1, [d["name"] for d in quantized]
    scale, zero_point = quantized[0]["quantization"]
    top1 = float(np.mean(got.argmax(axis=1) == expected.argmax(axis=1)))
    return float(scale), int(zero_point), top1, float(np.max(np.abs(got - expected)))


def test_int8_is_calibrated_on_the_calibration_file(
    trained_model_path: Path, tmp_path: Path
) -> None:
    # int8 maps the calibrated input range onto 256 steps: scale
    # (max - min) / 255, and min onto -128. Digits pixels lie in [0, 1]; the
    # same images times 100 in [0, 100]. Without a file the converter
    # calibrates on the digits test split, in [0, 1]: only the second file
    # tells whether the file is used.
    model = load_keras_model(trained_model_path)
    digits = load_samples(model, max_samples=50).arrays[0]
    assert (digits.min(), digits.max()) == (0.0, 1.0)

    fit = _int8_calibrated_on(model, digits, tmp_path / "digits")
    wide = _int8_calibrated_on(model, digits * 100.0, tmp_path / "digits_x100")

    (fit_scale, fit_zero, fit_top1, fit_err), (wide_scale, wide_zero, _, wide_err) = fit, wide
    assert fit_scale == pytest.approx(1 / 255, rel=1e-6)
    assert wide_scale == pytest.approx(100 / 255, rel=1e-6)
    assert fit_zero == wide_zero == -128
    assert fit_top1 >= 0.97
    # Pixels in [0, 1] on a grid of 100 / 255 = 0.39 keep about 3 levels.
    assert fit_err < 0.1 < wide_err


@pytest.mark.parametrize("name", ["reference_cnn", "separable_bn_cnn", "gru_classifier"])
def test_one_train_step_equals_one_keras_sgd_step(name: str, tmp_path: Path) -> None:
    model = ZOO[name]()
    artifact = tflite.export(model, tmp_path, ConvertOptions(targets=("tflite",)))
    samples = load_samples(model, max_samples=32)

    report = check_train_step(model, tmp_path, artifact.options["training"], samples.arrays)

    assert report.status == "pass", report.reason
    assert report.max_abs_err is not None and report.max_abs_err <= 1e-5


def test_training_artifact_round_trips_weights_in_canonical_order(tmp_path: Path) -> None:
    model = separable_bn_cnn()
    artifact = tflite.export(model, tmp_path, ConvertOptions(targets=("tflite",)))
    interpreter = tf.lite.Interpreter(
        model_path=str(tmp_path / artifact.options["training"]["path"])
    )
    keys = artifact.options["training"]["weight_keys"]
    new = [np.full(w.shape, i, dtype=np.float32) for i, w in enumerate(model.get_weights())]

    interpreter.get_signature_runner("set_weights")(**dict(zip(keys, new, strict=True)))
    got = interpreter.get_signature_runner("get_weights")()

    specs = ModelSpec.from_keras(model)
    assert len(keys) == len(specs) == len(new)
    for key, spec, value in zip(keys, specs, new, strict=True):
        assert got[key].shape == spec.shape
        np.testing.assert_array_equal(got[key], value)
    # BatchNormalization's moving statistics are part of the canonical list.
    assert any(s.name.endswith("moving_mean") for s in specs)


def test_the_simulator_trains_through_the_specs_training_keys(tmp_path: Path) -> None:
    """The artifact's keys are the spec's, and the simulator's TFLite runtime
    maps weights in and out by the spec alone (no key of its own making)."""
    from fedge.client_sim.device.trainers import TfliteTrainer

    model = separable_bn_cnn()
    artifact = tflite.export(model, tmp_path, ConvertOptions(targets=("tflite",)))
    spec = ModelSpec.from_keras(model)
    trainer = TfliteTrainer(tmp_path / artifact.options["training"]["path"], spec)
    weights = spec.named(
        [np.full(w.shape, i, dtype=np.float32) for i, w in enumerate(model.get_weights())]
    )

    trainer.set_weights(weights)
    got = trainer.get_weights()

    assert artifact.options["training"]["weight_keys"] == list(spec.train_keys)
    assert list(got) == list(spec.names)
    for name, value in weights.items():
        np.testing.assert_array_equal(got[name], value)


def test_a_layer_without_builtin_ops_is_named(tmp_path: Path) -> None:
    inputs = tf.keras.Input((4,), name="x")
    hidden = tf.keras.layers.Lambda(tf.math.erf, name="erf_layer")(inputs)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(2, name="out")(hidden))

    with pytest.raises(UnsupportedLayerError) as caught:
        tflite.export(model, tmp_path, FP32_ONLY)

    assert caught.value.layer == "erf_layer"
    assert "tflite" in str(caught.value) and "tf.Erf" in str(caught.value)
