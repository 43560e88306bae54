"""TF.js for models tfjs-layers cannot build: a graph model (inference only),
said so in the manifest and the summary, and run in Node for parity."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from fedge.bundle.manifest import verify_bundle
from fedge.cli.main import main
from fedge.converters.bundle import convert
from fedge.converters.options import ConvertOptions
from fedge.converters.targets import tfjs, tfjs_graph, tfjs_node
from tests.converters import zoo_rnn_custom as zoo

TFJS_ONLY = ConvertOptions(targets=("tfjs",), max_samples=32)
FALLBACKS = {
    "gru_reset_after": (zoo.gru_reset_after, r"'gru' \(GRU\).*reset_after"),
}


@pytest.mark.parametrize("name", sorted(FALLBACKS))
def test_a_model_tfjs_layers_lacks_becomes_a_checked_graph_model(name: str, tmp_path: Path) -> None:
    build, reason = FALLBACKS[name]
    path = zoo.save(build(), tmp_path / f"{name}.keras")

    result = convert(path, tmp_path / "b", TFJS_ONLY)

    manifest = verify_bundle(tmp_path / "b")
    record = manifest.artifacts["tfjs"]
    assert not result.failed
    assert record["format"] == "graph-model" and record["trainable"] is False
    assert any(re.search(reason, note) for note in record["notes"])
    document = json.loads((tmp_path / "b" / record["entry"]).read_text())
    assert document["format"] == "graph-model"
    parity = manifest.parity["tfjs"]
    assert parity["status"] == "pass", parity
    assert parity["max_abs_err"] <= 1e-5


def test_the_summary_says_the_tfjs_model_is_a_graph_model(tmp_path: Path) -> None:
    path = zoo.save(zoo.gru_reset_after(), tmp_path / "gru.keras")

    result = CliRunner().invoke(
        main, ["convert", str(path), "--out", str(tmp_path / "b"), "--targets", "tfjs"]
    )

    assert result.exit_code == 0, result.output
    assert "graph model, inference only" in " ".join(result.output.split())


def test_a_model_tfjs_layers_can_build_stays_a_trainable_layers_model(tmp_path: Path) -> None:
    model = zoo.bidirectional_gru()
    x = np.random.default_rng(0).uniform(size=(9, zoo.STEPS, zoo.FEATURES)).astype(np.float32)

    artifact = tfjs.export(model, tmp_path, TFJS_ONLY)
    got = tfjs.load_predictor(tmp_path, {"entry": artifact.entry, **artifact.options}).predict([x])

    assert artifact.options["format"] == "layers-model" and artifact.options["trainable"] is True
    assert np.max(np.abs(got[0] - model.predict(x, verbose=0))) <= 1e-5


def _fixed_normalization(invert: bool) -> Any:
    """Normalization built with a mean and variance per feature (no weights;
    one variance below Keras' epsilon squared), or its inverse."""
    import tensorflow as tf

    inputs = tf.keras.Input((4,), name="features")
    norm = tf.keras.layers.Normalization(
        mean=[0.5, -1.0, 3.0, 0.0], variance=[0.25, 4.0, 1e-16, 2.0], invert=invert, name="norm"
    )
    return tf.keras.Model(inputs, tf.keras.layers.Dense(2, name="out")(norm(inputs)))


@pytest.mark.parametrize("name", ["adapted", "fixed", "inverted"])
def test_a_normalization_model_is_a_trainable_layers_model_matching_keras(
    name: str, tmp_path: Path
) -> None:
    """fedge registers Keras' Normalization for TF.js (web/static/js/shared/
    normalization_layer.js), so the model stays a layers model: Node's TF.js
    predicts what Keras does, adapted weights loaded by their scoped names."""
    inverted = name == "inverted"
    model = zoo.normalization_model() if name == "adapted" else _fixed_normalization(inverted)
    x = np.random.default_rng(3).normal(3.0, 2.0, size=(17, 4)).astype(np.float32)

    artifact = tfjs.export(model, tmp_path, TFJS_ONLY)
    got = tfjs.load_predictor(tmp_path, {"entry": artifact.entry, **artifact.options}).predict([x])

    assert artifact.options["format"] == "layers-model" and artifact.options["trainable"] is True
    expected = model.predict(x, verbose=0)
    assert np.max(np.abs(got[0] - expected)) <= 1e-5 * max(1.0, float(np.abs(expected).max()))
    document = json.loads((tmp_path / artifact.entry).read_text())
    names = [w["name"] for g in document["weightsManifest"] for w in g["weights"]]
    statistics = ["norm/mean", "norm/variance", "norm/count"] if name == "adapted" else []
    assert names == [*statistics, "out/kernel", "out/bias"]


def _run_node(*args: str) -> dict[str, Any]:
    command = tfjs_node.runner_command()
    done = subprocess.run([*command, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_the_node_runner_runs_a_graph_model_by_input_and_output_name(tmp_path: Path) -> None:
    model = zoo.dict_output_model()
    # The graph path for a model tfjs-layers could build too: the runner,
    # not the exporter, is under test.
    tfjs_graph.write_graph_model(model, tmp_path / "graph", ConvertOptions())
    x = np.random.default_rng(1).normal(size=(6, 4)).astype(np.float32)
    tfjs_node.write_tensors(tmp_path / "in", [("features", x)])
    model_json = str(tmp_path / "graph" / "model.json")

    inputs = ["--model", model_json, "--inputs", str(tmp_path / "in")]

    ran = _run_node("predict", *inputs, "--outputs", str(tmp_path / "out"), "--batch-size", "4")
    bench = _run_node("bench", *inputs, "--warmup", "1", "--iters", "3")

    expected = model.predict(x, verbose=0)
    outputs = dict(tfjs_node.read_tensors(tmp_path / "out"))
    assert ran["format"] == "graph-model" and ran["outputs"] == ["probs", "score"]
    for name in ("probs", "score"):
        assert np.max(np.abs(outputs[name] - expected[name])) <= 1e-5
    assert bench["format"] == "graph-model" and bench["batch"] == 1 and bench["p50_us"] > 0
