"""Parity that cannot tell a runtime from a constant is not a pass; the
tolerances a user gives (per target, or for some precisions) are the ones
used, and a bad one is refused with a message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from rich.console import Console

from fedge.bundle.manifest import verify_bundle
from fedge.cli.main import main
from fedge.converters.bundle import convert
from fedge.converters.cli_view import summary_table
from fedge.converters.options import (
    DEFAULT_TOLERANCES,
    ConvertOptions,
    Tolerance,
    parse_tolerance,
)
from fedge.converters.parity.compare import compare
from fedge.errors import ConfigError
from tests.converters.zoo_users import constant_classifier, logits_classifier, save

FP32 = Tolerance(max_abs_err=1e-4)


def test_outputs_that_do_not_vary_make_parity_unverified() -> None:
    # Keras gives the same row for all three samples; the runtime is within
    # 1e-4 of it, but so would any constant be.
    same = np.tile(np.array([[0.2, 0.5, 0.3]], np.float32), (3, 1))
    varying = np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3], [0.1, 0.1, 0.8]], np.float32)

    constant = compare([same], [same + 5e-5], FP32, "fp32")
    normal = compare([varying], [varying + 5e-5], FP32, "fp32")

    assert constant.status == "unverified"
    assert constant.reason == (
        "Keras's output 0 does not vary over the 3 samples (spread 0 <= 0.0001): "
        "any constant would agree; check the model (untrained?) or give --samples"
    )
    assert constant.max_abs_err == pytest.approx(5e-5, rel=1e-3)
    assert normal.status == "pass"


def test_a_runtime_that_disagrees_with_a_constant_still_fails() -> None:
    same = np.tile(np.array([[0.2, 0.5, 0.3]], np.float32), (3, 1))

    report = compare([same], [same + 0.1], FP32, "fp32")

    assert report.status == "fail"


def test_a_constant_output_model_is_not_a_pass_in_the_bundle(tmp_path: Path) -> None:
    path = save(constant_classifier(), tmp_path)
    options = ConvertOptions(targets=("tflite",), tflite_training=False)

    result = convert(path, tmp_path / "b", options)

    record = result.manifest.parity["tflite"]
    console = Console(record=True, width=400)
    console.print(summary_table(result))
    summary = console.export_text()
    assert record["status"] == "unverified"
    assert "does not vary over the" in record["reason"]
    assert "tflite: parity unverified: Keras's output 0 does not vary" in summary
    assert not result.failed


def test_a_per_target_tolerance_replaces_the_precision_default() -> None:
    options = ConvertOptions(
        tflite_quantize="int8", target_tolerances={"tflite": Tolerance(max_abs_err=1e-3)}
    )

    assert options.tolerance("tflite") == Tolerance(max_abs_err=1e-3)
    assert options.tolerance("tfjs") == FP32
    assert options.tolerance("tflite_train") == Tolerance(max_rel_err=1e-2)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tflite=1e-3", ("tflite", Tolerance(max_abs_err=1e-3))),
        ("coreml=top1:0.95", ("coreml", Tolerance(min_top1_agreement=0.95))),
        ("tflite_train=2e-5", ("tflite_train", Tolerance(max_abs_err=2e-5))),
        ("tfjs=rel:0.02", ("tfjs", Tolerance(max_rel_err=0.02))),
    ],
)
def test_tolerance_text_is_parsed(text: str, expected: tuple[str, Tolerance]) -> None:
    assert parse_tolerance(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tflite", "--tolerance takes TARGET=BOUND (e.g. tflite=1e-3 or tflite=top1:0.95); "),
        ("onnx=1e-3", "--tolerance: unknown target 'onnx'; choose from "),
        ("tflite=lots", "--tolerance tflite: 'lots' is not a number"),
        ("tflite=-1", "--tolerance tflite: a bound must be >= 0, got -1"),
        ("tflite=top1:1.5", "--tolerance tflite: top-1 agreement must be in [0, 1], got 1.5"),
        ("tflite=top5:0.9", "--tolerance tflite: 'top5' is not a bound; give a number, "),
    ],
)
def test_a_bad_tolerance_text_is_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_tolerance(text)

    assert str(caught.value).startswith(message)


def test_the_cli_tolerance_is_the_one_recorded(tmp_path: Path) -> None:
    path = save(logits_classifier(), tmp_path)
    runner = CliRunner()
    base = ["convert", str(path), "--targets", "tflite", "--no-training"]

    ok = runner.invoke(main, [*base, "--out", str(tmp_path / "b"), "--tolerance", "tflite=1e-3"])
    bad = runner.invoke(main, [*base, "--out", str(tmp_path / "c"), "--tolerance", "tflite"])

    assert ok.exit_code == 0, ok.output
    tolerance = verify_bundle(tmp_path / "b").parity["tflite"]["tolerance"]
    assert tolerance["max_abs_err"] == 1e-3
    assert tolerance["min_top1_agreement"] is None
    assert bad.exit_code == 2
    assert "--tolerance takes TARGET=BOUND" in bad.output


def test_a_partial_tolerances_mapping_keeps_the_defaults_for_the_rest() -> None:
    loose = Tolerance(max_abs_err=0.5)
    options = ConvertOptions(tflite_quantize="fp16", tolerances={"fp32": loose})

    assert options.tolerance("tflite") == DEFAULT_TOLERANCES["fp16"]
    assert options.tolerance("tfjs") == loose


def test_a_tolerance_for_an_unknown_precision_is_refused() -> None:
    options = ConvertOptions(tolerances={"int4": Tolerance(max_abs_err=0.5)})

    with pytest.raises(ConfigError) as caught:
        options.validate()

    assert str(caught.value) == (
        "tolerances: unknown precision 'int4'; choose from fp32, fp16, dynamic, int8, uint8"
    )
