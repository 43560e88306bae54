"""Bundles with every target, and what happens when one target fails."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from fedge.bundle.manifest import verify_bundle
from fedge.cli.main import main
from fedge.converters.batch_predict import predict_bundle
from fedge.converters.bundle import convert
from fedge.converters.errors import ConversionError
from fedge.converters.options import ConvertOptions
from fedge.reference.data import load_task


def test_the_reference_model_gets_all_three_targets_verified(
    trained_model_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "bundle"

    result = convert(trained_model_path, out, ConvertOptions())

    manifest = verify_bundle(out)
    assert not result.failed
    assert set(manifest.artifacts) == {"keras", "weights", "tflite", "tfjs", "coreml"}
    for target in ("tflite", "tfjs", "coreml"):
        record = manifest.parity[target]
        assert record["status"] == "pass", (target, record)
        assert record["top1_agreement"] >= 0.99
    assert manifest.parity["tflite"]["max_abs_err"] <= 1e-4
    assert manifest.parity["tfjs"]["max_abs_err"] <= 1e-4
    assert manifest.parity["coreml"]["precision"] == "fp16"
    x = load_task().test.x[:8]
    np.save(tmp_path / "x.npy", x)
    outputs = {
        rt: predict_bundle(out, rt, tmp_path / "x.npy")[1][0]
        for rt in ("keras", "tflite", "tfjs", "coreml")
    }
    for runtime in ("tflite", "tfjs", "coreml"):
        assert (outputs[runtime].argmax(axis=1) == outputs["keras"].argmax(axis=1)).all()


def _bucketizing_model(tmp_path: Path) -> Path:
    """``Discretization`` (a Bucketize op): TFLite has the op, TF.js has not,
    not even as a graph model."""
    inputs = tf.keras.Input((4,), name="x")
    buckets = tf.keras.layers.Discretization(bin_boundaries=[0.25, 0.5, 0.75], name="disc")(inputs)
    outputs = tf.keras.layers.Dense(2, name="out")(tf.cast(buckets, tf.float32))
    path = tmp_path / "buckets.keras"
    tf.keras.Model(inputs, outputs).save(path)
    return path


def test_a_failing_target_is_left_out_and_named(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "convert",
            str(_bucketizing_model(tmp_path)),
            "--out",
            str(tmp_path / "b"),
            "--targets",
            "tflite,tfjs",
        ],
    )

    assert result.exit_code != 0
    assert "bundle written to" in result.output and "without: tfjs" in result.output
    assert "layer 'disc' (Discretization)" in result.output
    manifest = verify_bundle(tmp_path / "b")
    assert set(manifest.artifacts) == {"keras", "weights", "tflite"}
    assert "tfjs" in manifest.failures
    assert not (tmp_path / "b" / "tfjs").exists()


def test_strict_writes_no_bundle_when_a_target_fails(tmp_path: Path) -> None:
    model = _bucketizing_model(tmp_path)

    with pytest.raises(ConversionError, match=r"tfjs: layer 'disc' \(Discretization\)"):
        convert(model, tmp_path / "b", ConvertOptions(targets=("tflite", "tfjs"), strict=True))

    assert sorted(p.name for p in tmp_path.iterdir()) == ["buckets.keras"]


def test_a_runtime_that_crashes_during_parity_fails_that_target_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: a Node crash while TF.js ran for parity aborted the whole
    conversion; now the tfjs target fails and the others ship."""
    package = tmp_path / "node_modules" / "@tensorflow" / "tfjs"
    package.mkdir(parents=True)
    (package / "package.json").write_text('{"name": "@tensorflow/tfjs", "main": "index.js"}')
    # Loads fine, then the process dies before it writes a result.
    (package / "index.js").write_text("exports.enableProdMode = () => process.exit(7);\n")
    monkeypatch.setenv("FEDGE_NODE_MODULES", str(tmp_path / "node_modules"))
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential(
        [tf.keras.Input((4,), name="x"), tf.keras.layers.Dense(3, activation="softmax", name="p")]
    )
    model.save(tmp_path / "m.keras")

    result = convert(
        tmp_path / "m.keras",
        tmp_path / "bundle",
        ConvertOptions(targets=("tflite", "tfjs"), tflite_training=False),
    )

    manifest = verify_bundle(tmp_path / "bundle")
    assert [o.target for o in result.failed] == ["tfjs"]
    assert manifest.failures["tfjs"].startswith("tfjs: could not run for parity: node exited 7")
    assert set(manifest.artifacts) >= {"tflite"} and "tfjs" not in manifest.artifacts
    assert manifest.parity["tflite"]["status"] == "pass"
