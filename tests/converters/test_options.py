"""Options of ``fedge convert``: each target's precision, its tolerance, and
what ``validate`` refuses (with a message that names the bad value)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedge.converters.options import ConvertOptions, Tolerance
from fedge.errors import ConfigError

# The tolerance table, written out: full precision within 1e-4 of Keras,
# fp16 within 1 % of the range of Keras's outputs (a bound a regressor can
# meet too), 8-bit and dynamic-range modes by top-1 agreement of 97 %.
FP32 = Tolerance(max_abs_err=1e-4)
REL_1PCT = Tolerance(max_rel_err=0.01)
TOP1_97 = Tolerance(min_top1_agreement=0.97)


@pytest.mark.parametrize(
    ("options", "target", "precision", "tolerance"),
    [
        (ConvertOptions(tflite_quantize="none"), "tflite", "fp32", FP32),
        (ConvertOptions(tflite_quantize="fp16"), "tflite", "fp16", REL_1PCT),
        (ConvertOptions(tflite_quantize="dynamic"), "tflite", "dynamic", TOP1_97),
        (ConvertOptions(tflite_quantize="int8"), "tflite", "int8", TOP1_97),
        (ConvertOptions(tfjs_quantize="none"), "tfjs", "fp32", FP32),
        (ConvertOptions(tfjs_quantize="float16"), "tfjs", "fp16", REL_1PCT),
        (ConvertOptions(tfjs_quantize="uint8"), "tfjs", "uint8", TOP1_97),
        (ConvertOptions(coreml_precision="fp32"), "coreml", "fp32", FP32),
        (ConvertOptions(coreml_precision="fp16"), "coreml", "fp16", REL_1PCT),
        # The Keras reference itself is full precision.
        (ConvertOptions(tflite_quantize="int8"), "keras", "fp32", FP32),
    ],
    ids=[
        "tflite-none",
        "tflite-fp16",
        "tflite-dynamic",
        "tflite-int8",
        "tfjs-none",
        "tfjs-float16",
        "tfjs-uint8",
        "coreml-fp32",
        "coreml-fp16",
        "keras",
    ],
)
def test_each_mode_runs_at_its_precision_and_is_held_to_its_tolerance(
    options: ConvertOptions, target: str, precision: str, tolerance: Tolerance
) -> None:
    got_precision = options.precision(target)
    got_tolerance = options.tolerance(target)

    assert got_precision == precision
    assert got_tolerance == tolerance


def test_one_target_s_mode_does_not_change_another_s_precision() -> None:
    options = ConvertOptions(
        tflite_quantize="int8", tfjs_quantize="float16", coreml_precision="fp32"
    )

    precisions = [options.precision(t) for t in ("tflite", "tfjs", "coreml")]

    assert precisions == ["int8", "fp16", "fp32"]


def test_a_given_tolerance_replaces_the_default_for_its_precision() -> None:
    loose = Tolerance(max_abs_err=0.5)
    options = ConvertOptions(tfjs_quantize="none", tolerances={"fp32": loose, "fp16": REL_1PCT})

    got = options.tolerance("tfjs")

    assert got == loose
    assert ConvertOptions(tfjs_quantize="none").tolerance("tfjs") == FP32


def test_the_defaults_and_the_bounds_themselves_are_valid(tmp_path: Path) -> None:
    samples = tmp_path / "samples.npy"
    samples.write_bytes(b"")  # validate checks that the file exists, not what it holds
    options = [
        ConvertOptions(),
        ConvertOptions(targets=("coreml",), coreml_minimum_target="macOS15"),
        ConvertOptions(tfjs_shard_bytes=1024, max_samples=1),
        ConvertOptions(samples_path=samples, calibration_path=samples, tflite_quantize="int8"),
    ]

    for option in options:
        option.validate()  # raises on a refusal


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ConvertOptions(targets=("tflite", "onnx")),
            "unknown target(s) ['onnx']; choose from tflite, tfjs, coreml",
        ),
        (ConvertOptions(targets=()), "no target given"),
        (
            ConvertOptions(tflite_quantize="int4"),
            "--quantize must be one of none, fp16, dynamic, int8; got 'int4'",
        ),
        (
            ConvertOptions(tfjs_quantize="fp16"),
            "--tfjs-quantize must be one of none, float16, uint8; got 'fp16'",
        ),
        (
            ConvertOptions(coreml_precision="int8"),
            "--coreml-precision must be one of fp16, fp32; got 'int8'",
        ),
        (
            ConvertOptions(coreml_minimum_target="iOS9"),
            "--coreml-target must be one of iOS15, iOS16, iOS17, iOS18, "
            "macOS12, macOS13, macOS14, macOS15; got 'iOS9'",
        ),
        (ConvertOptions(tfjs_shard_bytes=1023), "shard size must be >= 1024 bytes, got 1023"),
        (ConvertOptions(max_samples=0), "max_samples must be >= 1, got 0"),
    ],
    ids=[
        "unknown-target",
        "no-target",
        "tflite-quantize",
        "tfjs-quantize",
        "coreml-precision",
        "coreml-target",
        "shard-bytes",
        "max-samples",
    ],
)
def test_bad_options_are_refused_with_the_bad_value_named(
    options: ConvertOptions, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        options.validate()

    assert str(caught.value) == message


@pytest.mark.parametrize("which", ["samples", "calibration"])
def test_a_missing_samples_or_calibration_file_is_refused(which: str, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.npy"
    options = (
        ConvertOptions(samples_path=missing)
        if which == "samples"
        else ConvertOptions(calibration_path=missing)
    )

    with pytest.raises(ConfigError) as caught:
        options.validate()

    assert str(caught.value) == f"no such file: {missing}"


def test_a_directory_is_not_a_samples_file(tmp_path: Path) -> None:
    options = ConvertOptions(calibration_path=tmp_path)

    with pytest.raises(ConfigError) as caught:
        options.validate()

    assert str(caught.value) == f"no such file: {tmp_path}"
