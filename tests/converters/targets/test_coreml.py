"""The Core ML target: every zoo model exported at fp32 and fp16, read back
and run, on Linux by the NumPy MIL evaluator, on macOS by Core ML."""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import coremltools as ct
import numpy as np
import numpy.typing as npt
import pytest
import tensorflow as tf
from coremltools.converters.mil.mil import Builder as mb

from fedge.converters.artifact import Artifact
from fedge.converters.errors import (
    BundleError,
    TargetFailedError,
    UnsupportedLayerError,
    UnsupportedOpError,
)
from fedge.converters.options import ConvertOptions
from fedge.converters.parity.compare import compare
from fedge.converters.targets.coreml import ENTRY, LABELS_KEY, MAX_BATCH, export, load_predictor
from tests.model_zoo import ZOO

Array = npt.NDArray[Any]
SAMPLES = 150  # 64 + 64 + 22: the predictor must split them into batches


@dataclass(frozen=True)
class Exported:
    model: Any
    bundle_dir: Path
    artifact: Artifact
    options: ConvertOptions


def classes(model: Any) -> int:
    return int(model.outputs[0].shape[-1])


@pytest.fixture(
    scope="module",
    params=[(m, p) for m in ZOO for p in ("fp32", "fp16")],
    ids=lambda mp: f"{mp[0]}-{mp[1]}",
)
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Exported:
    name, precision = request.param
    model = ZOO[name]()
    options = ConvertOptions(
        coreml_precision=precision,
        coreml_minimum_target="iOS16",
        author="fedge tests",
        version="7",
        description=f"{name} for the Core ML tests",
        labels=tuple(f"class-{i}" for i in range(classes(model))),
    )
    bundle_dir = tmp_path_factory.mktemp(f"{name}-{precision}")
    return Exported(model, bundle_dir, export(model, bundle_dir, options), options)


def random_inputs(model: Any, count: int) -> list[Array]:
    rng = np.random.default_rng(42)
    return [
        rng.uniform(0.0, 1.0, size=(count, *t.shape[1:])).astype(np.float32) for t in model.inputs
    ]


def test_export_writes_an_mlpackage_with_hashed_files(exported: Exported) -> None:
    package = exported.bundle_dir / ENTRY
    artifact = exported.artifact

    on_disk = sorted(
        p.relative_to(exported.bundle_dir).as_posix() for p in package.rglob("*") if p.is_file()
    )

    assert artifact.target == "coreml" and artifact.entry == ENTRY
    assert (package / "Manifest.json").is_file()
    assert [f.path for f in artifact.files] == on_disk
    for file in artifact.files:
        data = (exported.bundle_dir / file.path).read_bytes()
        assert file.sha256 == hashlib.sha256(data).hexdigest()
        assert file.bytes == len(data) > 0
    assert artifact.seconds > 0


def test_artifact_options_describe_the_package(exported: Exported) -> None:
    record = exported.artifact.options

    assert json.loads(json.dumps(record)) == record
    assert record["precision"] == exported.options.coreml_precision
    assert record["minimum_deployment_target"] == "iOS16"
    assert record["input_names"] == [t.name.split(":")[0] for t in exported.model.inputs]
    assert record["output_names"] == ["probs"]
    assert record["max_batch"] == MAX_BATCH
    assert record["classifier"] is True
    assert record["labels"] == list(exported.options.labels or ())


def test_metadata_round_trips_through_the_saved_spec(exported: Exported) -> None:
    spec = ct.models.MLModel(str(exported.bundle_dir / ENTRY), skip_model_load=True).get_spec()
    meta = spec.description.metadata

    assert meta.author == "fedge tests"
    assert meta.versionString == "7"
    assert meta.shortDescription == exported.options.description
    assert json.loads(meta.userDefined[LABELS_KEY]) == list(exported.options.labels or ())
    assert [f.name for f in spec.description.input] == exported.artifact.options["input_names"]
    assert [f.name for f in spec.description.output] == ["probs"]
    assert all(f.shortDescription for f in [*spec.description.input, *spec.description.output])
    assert LABELS_KEY in spec.description.output[0].shortDescription


def test_predictions_match_keras(exported: Exported) -> None:
    inputs = random_inputs(exported.model, SAMPLES)
    reference = exported.model.predict(inputs, verbose=0)
    predictor = load_predictor(exported.bundle_dir, {"entry": ENTRY, **exported.artifact.options})

    (got,) = predictor.predict(inputs)

    assert got.shape == reference.shape and got.dtype == np.float32
    max_err = float(np.max(np.abs(got - reference)))
    top1 = got.argmax(axis=1) == reference.argmax(axis=1)
    if exported.options.coreml_precision == "fp32":
        assert max_err <= 1e-4
        assert top1.all()
    else:
        assert max_err <= 5e-3  # fp16 keeps about 3 significant digits
        assert top1.mean() >= 0.99
        # Untrained zoo models give near-ties; only those may flip in fp16.
        best_two = np.sort(reference, axis=1)[:, -2:]
        decisive = best_two[:, 1] - best_two[:, 0] > 2 * max_err
        assert top1[decisive].all()
    report = compare(
        [reference], [got], exported.options.tolerance("coreml"), exported.options.coreml_precision
    )
    assert report.status == "pass", report.reason


def test_several_outputs_keep_keras_names_and_order(tmp_path: Path) -> None:
    # Keras's order (zscore, class_probs) is not the sorted one TensorFlow uses inside.
    tf.keras.utils.set_random_seed(5)
    inputs = tf.keras.Input(shape=(5,), name="features")
    hidden = tf.keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
    zscore = tf.keras.layers.Dense(1, name="zscore")(hidden)
    probs = tf.keras.layers.Dense(3, activation="softmax", name="class_probs")(hidden)
    model = tf.keras.Model(inputs, [zscore, probs], name="two_heads")
    x = random_inputs(model, 10)

    artifact = export(model, tmp_path, ConvertOptions(coreml_precision="fp32"))
    got = load_predictor(tmp_path, {"entry": ENTRY, **artifact.options}).predict(x)

    assert artifact.options["output_names"] == ["zscore", "class_probs"]
    assert artifact.options["classifier"] is False
    for reference, output in zip(model.predict(x, verbose=0), got, strict=True):
        assert output.shape == reference.shape
        assert float(np.max(np.abs(output - reference))) <= 1e-4


def test_a_layer_coremltools_cannot_convert_is_named(tmp_path: Path) -> None:
    inputs = tf.keras.Input(shape=(4,), name="x")
    hidden = tf.keras.layers.Dense(4, name="dense")(inputs)
    binned = tf.keras.layers.Discretization(bin_boundaries=[0.0, 1.0], name="bins")(hidden)
    model = tf.keras.Model(inputs, binned, name="binning")

    with pytest.raises(UnsupportedLayerError) as caught:
        export(model, tmp_path, ConvertOptions())

    assert caught.value.target == "coreml"
    assert caught.value.layer == "bins"
    assert caught.value.layer_type == "Discretization"
    assert str(caught.value).startswith("coreml: layer 'bins' (Discretization)")
    assert "Bucketize" in str(caught.value)  # the TensorFlow op behind it


def test_labels_must_match_the_number_of_classes(tmp_path: Path) -> None:
    model = ZOO["gru_classifier"]()  # 4 classes

    with pytest.raises(TargetFailedError, match="3 labels for 4 classes"):
        export(model, tmp_path, ConvertOptions(labels=("a", "b", "c")))

    assert not (tmp_path / "coreml").exists()


def test_a_package_the_evaluator_cannot_run_is_unsupported_not_wrong(tmp_path: Path) -> None:
    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 4, 4, 4))], opset_version=ct.target.iOS16)
    def prog(x: Any) -> Any:
        return mb.space_to_depth(x=x, block_size=2)

    package = tmp_path / ENTRY
    with warnings.catch_warnings():  # coremltools' own temporary directory
        warnings.simplefilter("ignore", ResourceWarning)
        ct.convert(prog, convert_to="mlprogram").save(str(package))

    with pytest.raises(UnsupportedOpError, match="space_to_depth"):
        load_predictor(tmp_path, {"entry": ENTRY})


def test_a_missing_package_is_a_bundle_error(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"model\.mlpackage is missing"):
        load_predictor(tmp_path, {"entry": ENTRY})
