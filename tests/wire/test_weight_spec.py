"""The one weight spec: names, shapes, dtypes and TFLite training keys,
from a manifest's JSON or from a Keras model, with numbers checkable by hand."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedge.bundle.manifest import Manifest
from fedge.wire.weight_spec import ModelSpec, WeightSpec, WeightSpecError, train_key

ROOT = Path(__file__).resolve().parents[2]

# A conv kernel 3x3x1x2 (18 floats), its bias (2), and an int64 counter.
SPEC_JSON = [
    {"name": "conv/kernel", "shape": [3, 3, 1, 2], "dtype": "float32"},
    {"name": "conv/bias", "shape": [2], "dtype": "float32"},
    {"name": "steps", "shape": [], "dtype": "int64"},
]


def test_a_spec_round_trips_through_the_manifest_json() -> None:
    spec = ModelSpec.from_json(SPEC_JSON)

    assert spec.names == ("conv/kernel", "conv/bias", "steps")
    assert [w.shape for w in spec] == [(3, 3, 1, 2), (2,), ()]
    assert len(spec) == 3
    assert spec.size == 18 + 2 + 1
    assert spec.nbytes == 18 * 4 + 2 * 4 + 8
    assert spec.to_json() == SPEC_JSON


def test_training_keys_follow_the_canonical_order() -> None:
    spec = ModelSpec.from_json(SPEC_JSON)

    assert spec.train_keys == ("w000", "w001", "w002")
    assert train_key(12) == "w012"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([SPEC_JSON[0], SPEC_JSON[0]], "twice"),
        ([{"name": "w", "shape": [None, 2], "dtype": "float32"}], "shape"),
        ([{"name": "w", "shape": [2], "dtype": "float"}], "float64"),
        ([{"name": "w", "shape": [2], "dtype": "nope"}], "unknown dtype"),
        ([{"name": "", "shape": [2], "dtype": "float32"}], "non-empty"),
        ([{"name": "w", "shape": [2]}], "name, shape and dtype"),
        ({"name": "w"}, "must be a list"),
    ],
)
def test_malformed_specs_are_refused(raw: Any, message: str) -> None:
    with pytest.raises(WeightSpecError, match=message):
        ModelSpec.from_json(raw)


def test_weights_are_put_in_canonical_order_and_checked() -> None:
    spec = ModelSpec.from_json(SPEC_JSON[:2])
    kernel, bias = np.ones((3, 3, 1, 2), np.float32), np.array([1.0, 2.0], np.float32)

    ordered = spec.ordered({"conv/bias": bias, "conv/kernel": kernel})

    assert list(ordered) == ["conv/kernel", "conv/bias"]
    assert spec.values({"conv/bias": bias, "conv/kernel": kernel})[1] is bias
    assert list(spec.named([kernel, bias])) == ["conv/kernel", "conv/bias"]
    with pytest.raises(WeightSpecError, match="missing"):
        spec.ordered({"conv/kernel": kernel})
    with pytest.raises(WeightSpecError, match=r"shape \(3,\)"):
        spec.ordered({"conv/kernel": kernel, "conv/bias": np.zeros(3, np.float32)})
    with pytest.raises(WeightSpecError, match="1 arrays for 2 weights"):
        spec.named([kernel])


def test_training_inputs_and_outputs_use_the_keys() -> None:
    spec = ModelSpec.from_json(SPEC_JSON[:2])
    weights = {"conv/kernel": np.zeros((3, 3, 1, 2)), "conv/bias": np.array([1.0, 2.0])}

    inputs = spec.to_train_inputs(weights)
    back = spec.from_train_outputs(inputs)

    assert list(inputs) == ["w000", "w001"]
    assert inputs["w001"].dtype == np.float32  # the spec's dtype, not float64
    np.testing.assert_array_equal(back["conv/bias"], [1.0, 2.0])
    with pytest.raises(WeightSpecError, match="w001"):
        spec.from_train_outputs({"w000": inputs["w000"]})


def test_a_keras_model_gives_canonical_names_without_the_variable_suffix() -> None:
    import tensorflow as tf

    inputs = tf.keras.Input((3,), name="x")
    hidden = tf.keras.layers.Dense(2, name="dense")(inputs)
    outputs = tf.keras.layers.BatchNormalization(name="bn")(hidden)
    model = tf.keras.Model(inputs, outputs)

    spec = ModelSpec.from_keras(model)

    assert model.weights[0].name == "dense/kernel:0"
    assert spec.names == (
        "dense/kernel",
        "dense/bias",
        "bn/gamma",
        "bn/beta",
        "bn/moving_mean",
        "bn/moving_variance",
    )
    assert spec.weights[0] == WeightSpec("dense/kernel", (3, 2), "float32")
    assert spec.size == 6 + 2 + 4 * 2
    assert list(spec.named(model.get_weights())) == list(spec.names)


def test_the_manifest_reads_and_writes_the_same_weights_json() -> None:
    raw: dict[str, Any] = {
        "format": "fedge-bundle/1",
        "name": "m",
        "version": "1",
        "created": "2024-01-01T00:00:00+00:00",
        "inputs": [{"name": "x", "shape": [None, 3], "dtype": "float32"}],
        "outputs": [{"name": "y", "shape": [None, 2], "dtype": "float32"}],
        "weights": SPEC_JSON,
        "labels": None,
        "artifacts": {},
        "parity": {},
        "documents": {},
        "failures": {},
    }

    manifest = Manifest.from_json(json.loads(json.dumps(raw)))

    assert isinstance(manifest.weights, ModelSpec)
    assert manifest.weights.train_keys == ("w000", "w001", "w002")
    assert manifest.to_json() == raw


def test_weight_names_and_training_keys_are_derived_in_one_module() -> None:
    """Regression: the ``:0`` suffix was stripped, and the ``w000`` keys
    formatted, in several modules that could drift apart."""
    pattern = re.compile(r"removesuffix\(\":0\"\)|\{[a-z_]+:03d\}")
    product = [ROOT / d for d in ("fedge", "server", "client_sim", "converters", "bench")]

    found = sorted(
        str(path.relative_to(ROOT))
        for folder in product
        for path in folder.rglob("*.py")
        if pattern.search(path.read_text())
    )

    assert found == ["fedge/wire/weight_spec.py"]


def test_differences_name_every_mismatch_and_nothing_for_the_same_spec() -> None:
    spec = ModelSpec.from_json(SPEC_JSON)
    other = ModelSpec.from_json(
        [
            {"name": "conv/kernel", "shape": [3, 3, 1, 4], "dtype": "float32"},
            {"name": "conv/bias", "shape": [2], "dtype": "float16"},
            {"name": "dense/kernel", "shape": [4, 2], "dtype": "float32"},
        ]
    )

    assert spec.differences(ModelSpec.from_json(SPEC_JSON), "here", "there") == []
    assert spec.differences(other, "here", "on the server") == [
        "steps only here",
        "dense/kernel only on the server",
        "conv/kernel: shape (3, 3, 1, 2) here, (3, 3, 1, 4) on the server",
        "conv/bias: dtype float32 here, float16 on the server",
    ]
    reordered = ModelSpec(tuple(reversed(spec.weights)))
    assert spec.differences(reordered, "here", "there") == [
        "the same weights in another order there"
    ]
