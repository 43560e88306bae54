"""The TF.js target: export with tensorflowjs, run in Node with @tensorflow/tfjs.

Parity is measured in the JavaScript runtime browsers use. The reference
CNN is checked on the digits test split; the other zoo models on 64 seeded
random inputs of their input shapes.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import tensorflow as tf

from fedge.converters.artifact import Artifact
from fedge.converters.errors import BundleError, UnsupportedLayerError
from fedge.converters.options import ConvertOptions
from fedge.converters.source.model_io import load_keras_model
from fedge.converters.targets import tfjs
from fedge.errors import ConfigError
from fedge.reference.data import TaskData
from fedge.wire.weight_spec import ModelSpec
from tests import model_zoo

SAMPLES = 64
PARITY_MODELS = ["reference_cnn", "two_input_functional", "separable_bn_cnn", "lstm_classifier"]


def _inputs(model: Any, task: TaskData) -> list[npt.NDArray[np.float32]]:
    if model.name == "digits_cnn":
        return [task.test.x[:SAMPLES]]
    rng = np.random.default_rng(0)
    return [rng.normal(size=(SAMPLES, *t.shape[1:])).astype(np.float32) for t in model.inputs]


def _keras(model: Any, inputs: list[npt.NDArray[np.float32]]) -> list[npt.NDArray[Any]]:
    out = model.predict(inputs, verbose=0)
    return out if isinstance(out, list) else [out]


def _run(bundle: Path, artifact: Artifact, inputs: list[npt.NDArray[Any]]) -> list[Any]:
    record = {"entry": artifact.entry, **artifact.options}
    return tfjs.load_predictor(bundle, record).predict(inputs)


def _max_abs_err(reference: list[npt.NDArray[Any]], got: list[npt.NDArray[Any]]) -> float:
    return max(float(np.max(np.abs(r - g))) for r, g in zip(reference, got, strict=True))


def _model_json(bundle: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((bundle / "tfjs" / "model.json").read_text())
    return document


@pytest.fixture(scope="module")
def trained_cnn(trained_model_path: Path) -> Any:
    """The trained reference CNN (about 96% test accuracy): quantization is
    judged on a model whose top-1 means something."""
    return load_keras_model(trained_model_path)


@pytest.mark.parametrize("name", PARITY_MODELS)
def test_fp32_matches_keras_in_node(name: str, tmp_path: Path, task: TaskData) -> None:
    model = model_zoo.ZOO[name]()
    inputs = _inputs(model, task)

    artifact = tfjs.export(model, tmp_path, ConvertOptions())
    got = _run(tmp_path, artifact, inputs)

    reference = _keras(model, inputs)
    assert [g.shape for g in got] == [r.shape for r in reference]
    assert _max_abs_err(reference, got) <= 1e-4


def test_keras_gru_is_named_as_what_tfjs_layers_lacks() -> None:
    # Keras 2's GRU defaults to reset_after=True, which tfjs-layers 4.22 lacks.
    with pytest.raises(UnsupportedLayerError, match=r"'gru' \(GRU\).*reset_after=False") as info:
        tfjs.check_layers(model_zoo.gru_classifier())

    assert (info.value.layer, info.value.layer_type) == ("gru", "GRU")


def test_keras_gru_becomes_a_graph_model_that_says_why(tmp_path: Path, task: TaskData) -> None:
    model = model_zoo.gru_classifier()
    inputs = _inputs(model, task)

    artifact = tfjs.export(model, tmp_path, ConvertOptions())
    got = _run(tmp_path, artifact, inputs)

    assert (artifact.options["format"], artifact.options["trainable"]) == ("graph-model", False)
    assert "layer 'gru' (GRU)" in artifact.options["notes"][0]
    assert _max_abs_err(_keras(model, inputs), got) <= 1e-4


def test_gru_with_reset_after_false_matches_keras(tmp_path: Path, task: TaskData) -> None:
    tf.keras.utils.set_random_seed(3)
    model = tf.keras.Sequential(
        [
            tf.keras.Input(shape=(10, 6), name="sequence"),
            tf.keras.layers.GRU(12, reset_after=False, name="gru"),
            tf.keras.layers.Dense(4, activation="softmax", name="probs"),
        ]
    )
    inputs = _inputs(model, task)

    got = _run(tmp_path, tfjs.export(model, tmp_path, ConvertOptions()), inputs)

    assert _max_abs_err(_keras(model, inputs), got) <= 1e-4


@pytest.mark.parametrize(
    ("quantize", "stored_dtype", "bytes_per_weight", "min_agreement"),
    [("float16", "float16", 2, 0.99), ("uint8", "uint8", 1, 0.97)],
)
def test_quantized_weights_keep_top1(
    quantize: str,
    stored_dtype: str,
    bytes_per_weight: int,
    min_agreement: float,
    trained_cnn: Any,
    tmp_path: Path,
    task: TaskData,
) -> None:
    images = task.test.x  # 360 digits

    artifact = tfjs.export(trained_cnn, tmp_path, ConvertOptions(tfjs_quantize=quantize))
    (got,) = _run(tmp_path, artifact, [images])

    (reference,) = _keras(trained_cnn, [images])
    agreement = float(np.mean(got.argmax(axis=1) == reference.argmax(axis=1)))
    assert agreement >= min_agreement
    weights = [w for g in _model_json(tmp_path)["weightsManifest"] for w in g["weights"]]
    assert {w["quantization"]["dtype"] for w in weights} == {stored_dtype}
    shard_bytes = sum(f.bytes for f in artifact.files if f.path.endswith(".bin"))
    assert shard_bytes == trained_cnn.count_params() * bytes_per_weight  # 38,282 weights
    assert artifact.options["quantization"] == quantize


def test_keras_still_loads_keras_files_after_an_export(tmp_path: Path) -> None:
    # tensorflowjs imports tf_keras, which re-registers Keras's public names.
    from tensorflow.python.util import tf_export

    model = model_zoo.reference_cnn()
    tfjs.export(model, tmp_path, ConvertOptions())
    model.save(tmp_path / "model.keras")

    assert tf_export.get_symbol_from_name("keras.layers.Conv2D") is tf.keras.layers.Conv2D
    loaded = load_keras_model(tmp_path / "model.keras")  # looped forever before the fix
    assert type(loaded.get_layer("conv1")) is tf.keras.layers.Conv2D


def test_an_unknown_quantization_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="float16, uint8; got 'int4'"):
        tfjs.export(model_zoo.reference_cnn(), tmp_path, ConvertOptions(tfjs_quantize="int4"))


def test_weights_are_sharded_at_the_shard_size(tmp_path: Path) -> None:
    model = model_zoo.reference_cnn()  # 38,282 float32 weights = 153,128 bytes
    shard = 32 * 1024

    artifact = tfjs.export(model, tmp_path, ConvertOptions(tfjs_shard_bytes=shard))

    shards = sorted((tmp_path / "tfjs").glob("group*.bin"))
    assert len(shards) == math.ceil(153_128 / shard) == 5
    assert all(p.stat().st_size <= shard for p in shards)
    assert sum(p.stat().st_size for p in shards) == 153_128
    assert artifact.options["weight_shards"] == 5
    assert artifact.options["shard_bytes"] == shard


def test_artifact_lists_every_file_with_its_hash(tmp_path: Path) -> None:
    model = model_zoo.reference_cnn()

    artifact = tfjs.export(model, tmp_path, ConvertOptions(tfjs_shard_bytes=64 * 1024))

    on_disk = {p.relative_to(tmp_path).as_posix(): p for p in (tmp_path / "tfjs").iterdir()}
    assert {f.path for f in artifact.files} == set(on_disk)
    for f in artifact.files:
        data = on_disk[f.path].read_bytes()
        assert (f.sha256, f.bytes) == (hashlib.sha256(data).hexdigest(), len(data))
    assert artifact.entry == "tfjs/model.json"
    assert artifact.options["format"] == "layers-model"
    json.dumps(artifact.options)  # goes into the manifest as is


def test_model_json_has_the_keras_layers_and_weight_names(tmp_path: Path) -> None:
    model = model_zoo.separable_bn_cnn()

    tfjs.export(model, tmp_path, ConvertOptions())

    document = _model_json(tmp_path)
    layers = document["modelTopology"]["model_config"]["config"]["layers"]
    written = [(lay["config"]["name"], lay["class_name"]) for lay in layers]
    keras = [(lay.name, type(lay).__name__) for lay in model.layers]
    assert [w for w in written if w[1] != "InputLayer"] == keras
    names = {w["name"] for g in document["weightsManifest"] for w in g["weights"]}
    # The TF.js weight names are the manifest's canonical names.
    assert names == set(ModelSpec.from_keras(model).names)


def _normalizing_model() -> Any:
    """UnitNormalization is a Keras 2 layer tfjs-layers 4.22 lacks (and fedge does not add)."""
    inputs = tf.keras.Input(shape=(4,), name="features")
    x = tf.keras.layers.UnitNormalization(name="scale")(inputs)
    outputs = tf.keras.layers.Dense(2, activation="softmax", name="probs")(x)
    return tf.keras.Model(inputs, outputs)


def test_a_layer_tfjs_lacks_is_named_before_export() -> None:
    with pytest.raises(UnsupportedLayerError, match=r"'scale' \(UnitNormalization\)"):
        tfjs.check_layers(_normalizing_model())


def test_a_layer_tfjs_lacks_is_named_when_node_cannot_load_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As if the export-time list missed a layer: Node's "Unknown layer" is the backstop.
    monkeypatch.setattr(tfjs, "check_layers", lambda model: None)
    artifact = tfjs.export(_normalizing_model(), tmp_path, ConvertOptions())
    predictor = tfjs.load_predictor(tmp_path, {"entry": artifact.entry})

    with pytest.raises(UnsupportedLayerError, match=r"'scale' \(UnitNormalization\)") as info:
        predictor.predict([np.zeros((1, 4), np.float32)])

    assert (info.value.layer, info.value.layer_type) == ("scale", "UnitNormalization")


def test_a_custom_activation_is_named_with_its_layer(tmp_path: Path) -> None:
    def cube(x: Any) -> Any:
        return x * x * x

    inputs = tf.keras.Input(shape=(4,), name="features")
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(2, activation=cube, name="cubed")(inputs))
    artifact = tfjs.export(model, tmp_path, ConvertOptions())
    predictor = tfjs.load_predictor(tmp_path, {"entry": artifact.entry})

    with pytest.raises(UnsupportedLayerError, match=r"'cubed' \(Dense\).*activation 'cube'"):
        predictor.predict([np.zeros((1, 4), np.float32)])


def test_a_missing_weight_shard_is_named(tmp_path: Path) -> None:
    model = model_zoo.reference_cnn()
    artifact = tfjs.export(model, tmp_path, ConvertOptions(tfjs_shard_bytes=32 * 1024))
    (tmp_path / "tfjs" / "group1-shard3of5.bin").unlink()

    with pytest.raises(BundleError, match=r"tfjs/group1-shard3of5\.bin is missing"):
        tfjs.load_predictor(tmp_path, {"entry": artifact.entry})


def test_a_shard_lost_after_loading_is_named_by_node(tmp_path: Path) -> None:
    artifact = tfjs.export(model_zoo.reference_cnn(), tmp_path, ConvertOptions())
    predictor = tfjs.load_predictor(tmp_path, {"entry": artifact.entry})
    (tmp_path / "tfjs" / "group1-shard1of1.bin").unlink()

    with pytest.raises(BundleError, match=r"weight shard not found: .*group1-shard1of1\.bin"):
        predictor.predict([np.zeros((1, 8, 8, 1), np.float32)])


def test_a_truncated_shard_is_reported_with_sizes(tmp_path: Path) -> None:
    artifact = tfjs.export(model_zoo.reference_cnn(), tmp_path, ConvertOptions())
    shard = tmp_path / "tfjs" / "group1-shard1of1.bin"
    shard.write_bytes(shard.read_bytes()[:1000])

    with pytest.raises(BundleError, match=r"hold 1000 bytes but model\.json describes 153128"):
        _run(tmp_path, artifact, [np.zeros((1, 8, 8, 1), np.float32)])
