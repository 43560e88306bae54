"""int8 calibrates on the user's data or not at all, and parity says which
inputs it ran on (and their range), in the manifest, the card and the summary.

The pixel classifier takes whole pixels in 0..255. Calibrated on seeded
uniform [0, 1) numbers (what fedge used to do for any model but the
reference CNN), its int8 copy clips every real pixel above 1 and agrees with
Keras on about one image in ten; calibrated on real pixels it agrees on
nearly all.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from rich.console import Console

from fedge.bundle.manifest import verify_bundle
from fedge.cli.main import main
from fedge.converters.bundle import BundleResult, convert
from fedge.converters.cli_view import summary_table
from fedge.converters.errors import ConversionError
from fedge.converters.options import ConvertOptions
from fedge.converters.parity.samples import load_samples
from fedge.errors import ConfigError
from tests.converters.zoo_users import (
    logits_classifier,
    pixel_classifier,
    pixel_images,
    save,
    token_classifier,
)
from tests.model_zoo import reference_cnn

INT8 = ConvertOptions(targets=("tflite",), tflite_training=False, tflite_quantize="int8")


def _summary_text(result: BundleResult) -> str:
    console = Console(record=True, width=400)
    console.print(summary_table(result))
    return console.export_text()


def test_int8_for_a_model_without_user_inputs_is_refused_and_says_why(tmp_path: Path) -> None:
    model = save(logits_classifier(), tmp_path)

    with pytest.raises(ConfigError) as caught:
        convert(model, tmp_path / "b", INT8)

    message = str(caught.value)
    assert "int8 needs calibration data" in message
    assert "--calibration FILE" in message and "--samples FILE" in message
    assert "random" in message
    assert not (tmp_path / "b").exists()


def test_int8_on_user_pixels_agrees_where_random_calibration_did_not(tmp_path: Path) -> None:
    model = save(pixel_classifier(), tmp_path)
    x, _ = pixel_images()
    np.save(tmp_path / "real.npy", x[1200:1500])  # parity: images the model never saw
    np.save(tmp_path / "calib_real.npy", x[:200])
    uniform = np.random.default_rng(0).uniform(0.0, 1.0, (200, 8, 8, 1)).astype(np.float32)
    np.save(tmp_path / "calib_uniform.npy", uniform)

    real = convert(
        model,
        tmp_path / "real",
        replace(
            INT8, samples_path=tmp_path / "real.npy", calibration_path=tmp_path / "calib_real.npy"
        ),
    )
    old = convert(
        model,
        tmp_path / "old",
        replace(
            INT8,
            samples_path=tmp_path / "real.npy",
            calibration_path=tmp_path / "calib_uniform.npy",
            keep_failed=True,
        ),
    )

    good, bad = real.manifest.parity["tflite"], old.manifest.parity["tflite"]
    assert good["status"] == "pass" and good["top1_agreement"] >= 0.97
    assert bad["status"] == "fail" and bad["top1_agreement"] <= 0.3
    assert good["inputs"] == {
        "kind": "user samples",
        "source": str(tmp_path / "real.npy"),
        "range": {"pixels": [0.0, 255.0]},
    }
    calibration = real.manifest.artifacts["tflite"]["calibration"]
    assert calibration["kind"] == "user samples"
    assert calibration["range"] == {"pixels": [0.0, 255.0]}
    assert old.manifest.artifacts["tflite"]["calibration"]["range"]["pixels"][1] < 1.0
    # --keep-failed: the int8 file is in the bundle, marked failed, not verified.
    assert old.manifest.artifacts["tflite"]["verified"] is False
    assert "tflite" in old.manifest.failures
    assert (tmp_path / "old" / "tflite" / "model.tflite").is_file()
    verify_bundle(tmp_path / "old")


def test_samples_alone_calibrate_int8(tmp_path: Path) -> None:
    model = save(pixel_classifier(), tmp_path)
    np.save(tmp_path / "real.npy", pixel_images()[0][1200:1400])

    result = convert(model, tmp_path / "b", replace(INT8, samples_path=tmp_path / "real.npy"))

    assert result.manifest.parity["tflite"]["status"] == "pass"
    assert result.manifest.artifacts["tflite"]["calibration"]["source"] == str(
        tmp_path / "real.npy"
    )


@pytest.mark.parametrize("kind", ["user samples", "reference task", "seeded random"])
def test_parity_names_its_inputs_and_their_range_everywhere(kind: str, tmp_path: Path) -> None:
    options = ConvertOptions(targets=("tflite",), tflite_training=False)
    if kind == "user samples":
        model = save(logits_classifier(), tmp_path)
        np.save(tmp_path / "mine.npy", np.linspace(-3, 5, 60, dtype=np.float32).reshape(10, 6))
        options = ConvertOptions(
            targets=("tflite",), tflite_training=False, samples_path=tmp_path / "mine.npy"
        )
        name, low, high = "features", -3.0, 5.0
    elif kind == "reference task":
        model = save(reference_cnn(), tmp_path)
        name, low, high = "image", 0.0, 1.0
    else:
        model = save(logits_classifier(), tmp_path)
        name, low, high = "features", 0.0, 1.0

    result = convert(model, tmp_path / "b", options)

    record = result.manifest.parity["tflite"]["inputs"]
    card = (tmp_path / "b" / "MODEL_CARD.md").read_text()
    summary = _summary_text(result)
    assert record["kind"] == kind
    got_low, got_high = record["range"][name]
    assert got_low == pytest.approx(low, abs=0.02) and got_high == pytest.approx(high, abs=0.02)
    assert f"Parity inputs: {kind}" in card
    assert f"{name} in [{got_low:.3g}, {got_high:.3g}]" in card
    assert f"parity inputs: {kind}" in summary
    assert f"{name} in [{got_low:.3g}, {got_high:.3g}]" in summary


def test_calibration_without_int8_is_an_error_exit_2(tmp_path: Path) -> None:
    model = save(logits_classifier(), tmp_path)
    np.save(tmp_path / "c.npy", np.zeros((4, 6), np.float32))

    result = CliRunner().invoke(
        main,
        [
            *("convert", str(model), "--out", str(tmp_path / "b"), "--targets", "tflite"),
            *("--calibration", str(tmp_path / "c.npy")),
        ],
    )

    assert result.exit_code == 2, result.output
    assert "--calibration is only used by --quantize int8" in result.output
    assert not (tmp_path / "b").exists()


def test_fractional_floats_for_an_integer_input_are_refused_not_truncated(
    tmp_path: Path,
) -> None:
    model = token_classifier()
    np.save(tmp_path / "halves.npy", np.full((3, 4), 2.5, np.float32))
    np.save(tmp_path / "whole.npy", np.full((3, 4), 7.0, np.float32))

    with pytest.raises(ConversionError) as caught:
        load_samples(model, tmp_path / "halves.npy")
    whole = load_samples(model, tmp_path / "whole.npy")

    assert str(caught.value) == (
        f"{tmp_path / 'halves.npy'}: input 'tokens' takes int32, but the file has "
        "float32 values with fractions (e.g. 2.5); round them or save integers"
    )
    assert whole.arrays[0].dtype == np.int32
    assert whole.arrays[0].tolist() == [[7, 7, 7, 7]] * 3


def test_an_empty_samples_file_says_it_has_no_rows(tmp_path: Path) -> None:
    model = logits_classifier()
    (tmp_path / "empty.csv").write_text("")
    np.save(tmp_path / "empty.npy", np.zeros((0, 6), np.float32))

    messages = []
    for name in ("empty.csv", "empty.npy"):
        with pytest.raises(ConversionError) as caught:
            load_samples(model, tmp_path / name)
        messages.append(str(caught.value))

    assert messages == [f"{tmp_path / name}: no rows" for name in ("empty.csv", "empty.npy")]


def test_a_csv_of_flattened_rows_is_read_as_samples(tmp_path: Path) -> None:
    model = logits_classifier()
    rows = np.arange(12, dtype=np.float32).reshape(2, 6)
    np.savetxt(tmp_path / "rows.csv", rows, delimiter=",")
    np.savetxt(tmp_path / "short.csv", rows[:, :5], delimiter=",")

    got = load_samples(model, tmp_path / "rows.csv")
    with pytest.raises(ConversionError) as caught:
        load_samples(model, tmp_path / "short.csv")

    np.testing.assert_array_equal(got.arrays[0], rows)
    assert str(caught.value) == (
        f"{tmp_path / 'short.csv'}: rows have 5 values; input 'features' takes 6 ((6,))"
    )


def test_the_cli_refuses_int8_without_inputs_with_exit_2(tmp_path: Path) -> None:
    model = save(logits_classifier(), tmp_path)

    result = CliRunner().invoke(
        main,
        [
            "convert",
            str(model),
            "--out",
            str(tmp_path / "b"),
            "--targets",
            "tflite",
            "--quantize",
            "int8",
        ],
    )

    assert result.exit_code == 2, result.output
    assert "int8 needs calibration data" in result.output
    assert "no bundle was written" in result.output
    assert not (tmp_path / "b").exists()


def test_the_reference_model_calibrates_on_the_digits_without_a_file(
    trained_model_path: Path, tmp_path: Path
) -> None:
    result = convert(trained_model_path, tmp_path / "b", INT8)

    calibration = result.manifest.artifacts["tflite"]["calibration"]
    assert (calibration["kind"], calibration["source"], calibration["rows"]) == (
        "reference task",
        "digits test split",
        200,
    )
    assert calibration["range"] == {"image": [0.0, 1.0]}
    assert result.manifest.parity["tflite"]["status"] == "pass"
    card = (tmp_path / "b" / "MODEL_CARD.md").read_text()
    assert "int8 calibrated on: reference task (digits test split); image in [0, 1]." in card


def test_int8_calibrates_a_token_id_model_on_its_integer_ids(tmp_path: Path) -> None:
    model = token_classifier()
    # Decisive weights (ids 0..4 vote class 0, 5..9 class 1), so int8's rounding
    # cannot flip a decision and parity judges the conversion, not a coin toss.
    votes = np.where(np.arange(10) < 5, 2.0, -2.0).astype(np.float32)
    model.get_layer("embed").set_weights([np.stack([votes, 0 * votes, 0 * votes], axis=1)])
    kernel = np.zeros((12, 2), np.float32)
    kernel[0::3, 0], kernel[0::3, 1] = 1.0, -1.0
    model.get_layer("probs").set_weights([kernel, np.zeros(2, np.float32)])
    rng = np.random.default_rng(0)
    high = rng.integers(0, 2, size=(32, 1))
    ids = (rng.integers(0, 5, size=(32, 4)) + 5 * high).astype(np.int32)
    np.save(tmp_path / "ids.npy", ids)

    result = convert(
        save(model, tmp_path),
        tmp_path / "b",
        replace(INT8, calibration_path=tmp_path / "ids.npy", max_samples=32),
    )

    verify_bundle(tmp_path / "b")
    calibration = result.manifest.artifacts["tflite"]["calibration"]
    assert calibration["kind"] == "user samples"
    assert calibration["rows"] == 32
    assert result.manifest.parity["tflite"]["status"] == "pass"
