from __future__ import annotations

import pytest

from fedge.converters.options import (
    COREML_PRECISIONS,
    TFJS_QUANTIZATIONS,
    TFLITE_QUANTIZATIONS,
    ConvertOptions,
    Tolerance,
)
from fedge.errors import ConfigError


@pytest.mark.parametrize("mode", TFLITE_QUANTIZATIONS)
def test_every_tflite_mode_has_a_tolerance(mode: str) -> None:
    options = ConvertOptions(tflite_quantize=mode)

    assert isinstance(options.tolerance("tflite"), Tolerance)


@pytest.mark.parametrize("mode", TFJS_QUANTIZATIONS)
def test_every_tfjs_mode_has_a_tolerance(mode: str) -> None:
    options = ConvertOptions(tfjs_quantize=mode)

    assert isinstance(options.tolerance("tfjs"), Tolerance)


@pytest.mark.parametrize("precision", COREML_PRECISIONS)
def test_every_coreml_precision_has_a_tolerance(precision: str) -> None:
    options = ConvertOptions(coreml_precision=precision)

    assert isinstance(options.tolerance("coreml"), Tolerance)


def test_full_precision_is_held_to_1e_4_and_reduced_precision_to_top_1() -> None:
    options = ConvertOptions(tfjs_quantize="float16", tflite_quantize="int8")

    assert ConvertOptions().tolerance("tflite") == Tolerance(max_abs_err=1e-4)
    assert options.tolerance("tfjs") == Tolerance(min_top1_agreement=0.99)
    assert options.tolerance("tflite") == Tolerance(min_top1_agreement=0.97)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (ConvertOptions(targets=("onnx",)), "unknown target"),
        (ConvertOptions(targets=()), "no target given"),
        (ConvertOptions(tflite_quantize="int4"), "--quantize must be one of"),
        (ConvertOptions(coreml_minimum_target="iOS9"), "--coreml-target must be one of"),
    ],
)
def test_bad_options_are_refused(options: ConvertOptions, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        options.validate()
