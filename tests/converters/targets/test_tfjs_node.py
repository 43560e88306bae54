"""The Python <-> Node bridge of the TF.js target: the tensor exchange format,
multiple inputs and outputs, the benchmark mode, and clear errors when Node or
its packages are missing or a run takes too long."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import tensorflow as tf

from fedge.converters.errors import RuntimeUnavailableError, TargetFailedError
from fedge.converters.options import ConvertOptions
from fedge.converters.targets import tfjs, tfjs_node
from tests import model_zoo


def test_tensors_round_trip_as_float32_and_int32(tmp_path: Path) -> None:
    floats = np.arange(6, dtype=np.float64).reshape(2, 3) / 4  # 0, 0.25, ... 1.25
    ints = np.array([[7], [-2]], dtype=np.int64)

    tfjs_node.write_tensors(tmp_path, [("a", floats), ("b", ints)])
    back = tfjs_node.read_tensors(tmp_path)

    assert [name for name, _ in back] == ["a", "b"]
    assert back[0][1].dtype == np.float32 and back[1][1].dtype == np.int32
    np.testing.assert_array_equal(back[0][1], floats)
    np.testing.assert_array_equal(back[1][1], ints)
    assert (tmp_path / "0.bin").stat().st_size == 6 * 4


def test_strings_cannot_be_sent(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'words': dtype <U1"):
        tfjs_node.write_tensors(tmp_path, [("words", np.array(["a"]))])


def _two_heads() -> Any:
    """Integer token ids and a float feature in; a softmax and a scalar out."""
    tf.keras.utils.set_random_seed(7)
    tokens = tf.keras.Input(shape=(5,), dtype="int32", name="tokens")
    extra = tf.keras.Input(shape=(3,), name="extra")
    x = tf.keras.layers.Embedding(20, 4, name="embed")(tokens)
    x = tf.keras.layers.GlobalAveragePooling1D(name="mean")(x)
    x = tf.keras.layers.Concatenate(name="concat")([x, extra])
    probs = tf.keras.layers.Dense(3, activation="softmax", name="probs")(x)
    score = tf.keras.layers.Dense(1, name="score")(x)
    return tf.keras.Model([tokens, extra], [probs, score])


def test_multiple_inputs_and_outputs_keep_their_order(tmp_path: Path) -> None:
    model = _two_heads()
    rng = np.random.default_rng(0)
    inputs: list[npt.NDArray[Any]] = [
        rng.integers(0, 20, size=(16, 5)),
        rng.normal(size=(16, 3)).astype(np.float32),
    ]
    artifact = tfjs.export(model, tmp_path, ConvertOptions())

    probs, score = tfjs.load_predictor(tmp_path, {"entry": artifact.entry}).predict(inputs)

    want_probs, want_score = model.predict(inputs, verbose=0)
    assert (probs.shape, score.shape) == ((16, 3), (16, 1))
    assert float(np.max(np.abs(probs - want_probs))) <= 1e-5
    assert float(np.max(np.abs(score - want_score))) <= 1e-5


def test_wrong_input_count_is_explained(tmp_path: Path) -> None:
    artifact = tfjs.export(model_zoo.two_input_functional(), tmp_path, ConvertOptions())
    predictor = tfjs.load_predictor(tmp_path, {"entry": artifact.entry})

    with pytest.raises(TargetFailedError, match=r"takes 2 input\(s\).*got 1"):
        predictor.predict([np.zeros((1, 8, 8, 1), np.float32)])


def test_node_latency_reports_percentiles_at_batch_1(tmp_path: Path) -> None:
    artifact = tfjs.export(model_zoo.reference_cnn(), tmp_path, ConvertOptions())
    samples = [np.zeros((8, 8, 8, 1), np.float32)]  # only the first row is used

    latency = tfjs.node_latency_us(tmp_path, {"entry": artifact.entry}, samples, 3, 20)

    assert latency["batch"] == 1 and latency["iters"] == 20 and latency["warmup"] == 3
    assert 0 < latency["min_us"] <= latency["p50_us"] <= latency["p90_us"]


def test_a_run_past_its_timeout_is_stopped(tmp_path: Path) -> None:
    artifact = tfjs.export(model_zoo.reference_cnn(), tmp_path, ConvertOptions())
    predictor = tfjs.TfjsPredictor(tmp_path / artifact.entry, timeout_s=0.05)

    with pytest.raises(TargetFailedError, match=r"took longer than 0\.05 s"):
        predictor.predict([np.zeros((1, 8, 8, 1), np.float32)])

    assert not _runner_processes(tmp_path)


def _runner_processes(marker: Path) -> list[int]:
    """Pids of live tfjs_run.mjs processes whose command line mentions ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "tfjs_run.mjs" in cmdline and str(marker) in cmdline:
            found.append(int(entry.name))
    return found


def test_missing_node_says_how_to_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)

    with pytest.raises(RuntimeUnavailableError, match=r"node is not on PATH.*scripts/setup\.sh"):
        tfjs_node.runner_command()


def test_missing_node_packages_say_how_to_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    web = tmp_path / "web"
    (web / "node").mkdir(parents=True)
    (web / "node" / "tfjs_run.mjs").write_text("")
    monkeypatch.setattr(tfjs_node, "web_dir", lambda: web)
    # No per-user install from `fedge setup-node`, and no explicit setting.
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data-home"))
    monkeypatch.delenv("FEDGE_NODE_MODULES", raising=False)

    with pytest.raises(RuntimeUnavailableError, match=r"@tensorflow/tfjs is not installed.*setup"):
        tfjs_node.runner_command()
