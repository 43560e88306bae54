"""The bundle: manifest hashes, model card, atomic writes, clear failures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import tensorflow as tf

from fedge.bundle.manifest import ManifestError, verify_bundle
from fedge.converters.bundle import convert
from fedge.converters.errors import ConversionError, ModelLoadError
from fedge.converters.options import ConvertOptions, Tolerance

TFLITE = ConvertOptions(targets=("tflite",))


@tf.keras.utils.register_keras_serializable(package="fedge_tests")
class ErfLayer(tf.keras.layers.Layer):  # type: ignore[misc]
    """A layer whose op (Erf) has no TFLite builtin kernel."""

    def call(self, inputs: Any) -> Any:
        return tf.math.erf(inputs)


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


def test_bundle_manifest_accounts_for_every_file(trained_model_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "bundle"

    result = convert(trained_model_path, out, TFLITE)

    manifest = verify_bundle(out)
    listed = {f["path"] for f in manifest.files()}
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert on_disk - listed == {"manifest.json", "manifest.sha256"}
    assert listed == on_disk - {"manifest.json", "manifest.sha256"}
    assert set(manifest.artifacts) == {"keras", "weights", "tflite"}
    assert manifest.parity["tflite"]["status"] == "pass"
    assert manifest.parity["tflite"]["max_abs_err"] <= 1e-4
    assert manifest.parity["tflite_train"]["status"] == "pass"
    assert [w.name for w in manifest.weights][:2] == ["conv1/kernel", "conv1/bias"]
    assert manifest.labels == tuple("0123456789")
    assert not result.failed
    assert _leftovers(tmp_path) == ["bundle"]


def test_model_card_reports_metrics_per_target(trained_model_path: Path, tmp_path: Path) -> None:
    convert(trained_model_path, tmp_path / "b", TFLITE)

    card = (tmp_path / "b" / "MODEL_CARD.md").read_text()

    for heading in ("## Intended use", "## Data", "## Metrics per target", "## Limits"):
        assert heading in card
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    accuracy = manifest["parity"]["tflite"]["accuracy"]
    assert accuracy > 0.9
    assert f"{accuracy:.2%}" in card


def test_a_modified_file_fails_verification(trained_model_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    convert(trained_model_path, out, TFLITE)
    model_file = out / "tflite" / "model.tflite"
    data = bytearray(model_file.read_bytes())
    data[100] ^= 0xFF
    model_file.write_bytes(bytes(data))

    with pytest.raises(ManifestError, match=r"tflite/model.tflite does not match its sha256"):
        verify_bundle(out)

    model_file.unlink()
    with pytest.raises(ManifestError, match=r"missing file tflite/model.tflite"):
        verify_bundle(out)


def test_a_corrupt_model_gives_a_clear_error_and_no_bundle(tmp_path: Path) -> None:
    corrupt = tmp_path / "model.keras"
    corrupt.write_bytes(b"PK\x03\x04 this is not a keras archive")

    with pytest.raises(ModelLoadError, match="could not load"):
        convert(corrupt, tmp_path / "b", TFLITE)

    assert _leftovers(tmp_path) == ["model.keras"]


def test_a_missing_model_gives_a_clear_error_and_no_bundle(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="model not found"):
        convert(tmp_path / "nope.keras", tmp_path / "b", TFLITE)

    assert _leftovers(tmp_path) == []


def test_an_unsupported_layer_fails_with_its_name_and_leaves_no_bundle(tmp_path: Path) -> None:
    inputs = tf.keras.Input((4,), name="x")
    outputs = tf.keras.layers.Dense(2, name="out")(ErfLayer(name="erf")(inputs))
    path = tmp_path / "erf.keras"
    tf.keras.Model(inputs, outputs).save(path)

    with pytest.raises(ConversionError, match=r"tflite: layer 'erf' \(ErfLayer\)"):
        convert(path, tmp_path / "b", ConvertOptions(targets=("tflite",), strict=True))

    assert _leftovers(tmp_path) == ["erf.keras"]


def test_parity_out_of_tolerance_names_the_target_and_by_how_much(
    trained_model_path: Path, tmp_path: Path
) -> None:
    tight = ConvertOptions(
        targets=("tflite",),
        tflite_quantize="fp16",
        strict=True,
        tflite_training=False,
        tolerances={"fp16": Tolerance(max_abs_err=1e-9)},
    )

    with pytest.raises(ConversionError, match=r"tflite: parity FAILED: max abs error .* > 1e-09"):
        convert(trained_model_path, tmp_path / "b", tight)

    assert not (tmp_path / "b").exists()


def test_an_existing_bundle_is_kept_unless_forced(trained_model_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    out.mkdir()
    (out / "keep.txt").write_text("mine")

    with pytest.raises(ConversionError, match="already exists"):
        convert(trained_model_path, out, TFLITE)
    assert (out / "keep.txt").read_text() == "mine"

    convert(trained_model_path, out, TFLITE, force=True)
    assert not (out / "keep.txt").exists()
    assert verify_bundle(out).name == "digits_cnn"


def test_no_verify_marks_parity_unverified(trained_model_path: Path, tmp_path: Path) -> None:
    options = ConvertOptions(targets=("tflite",), verify=False, tflite_training=False)

    convert(trained_model_path, tmp_path / "b", options)

    record = verify_bundle(tmp_path / "b").parity["tflite"]
    assert record["status"] == "unverified"
    assert record["max_abs_err"] is None
