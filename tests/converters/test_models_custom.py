"""Custom layers (``--custom-objects``) and Lambda layers
(``--unsafe-deserialization``) from the command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from fedge.bundle.manifest import verify_bundle
from fedge.cli.main import main
from fedge.converters.batch_predict import predict_bundle
from fedge.converters.errors import ConversionError, ModelLoadError
from fedge.converters.options import ConvertOptions
from fedge.converters.source.model_io import load_model, resolve_custom_objects
from fedge.errors import ConfigError
from tests.converters import custom_layers
from tests.converters import zoo_rnn_custom as zoo

TARGETS = "tflite,tfjs,coreml"


def _convert(model: Path, out: Path, *flags: str) -> tuple[int, str]:
    args = ["convert", str(model), "--out", str(out), "--targets", TARGETS, "--no-training"]
    result = CliRunner().invoke(main, [*args, "--max-samples", "32", *flags])
    return result.exit_code, " ".join(result.output.split())


def _assert_every_target_passes(bundle: Path) -> None:
    manifest = verify_bundle(bundle)
    assert not manifest.failures, manifest.failures
    for target in TARGETS.split(","):
        assert manifest.parity[target]["status"] == "pass", manifest.parity[target]


def test_custom_objects_name_a_module_and_a_class() -> None:
    found = resolve_custom_objects(("tests.converters.custom_layers:Offset",))

    assert found == {"Offset": custom_layers.Offset}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("tests.converters.no_such_module", "cannot import 'tests.converters.no_such_module'"),
        ("tests.converters.custom_layers:Nope", "has no 'Nope'"),
        ("tests.converters.custom_layers:", "MODULE or MODULE:NAME"),
    ],
)
def test_a_bad_custom_objects_spec_says_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_custom_objects((spec,))


def test_an_unknown_custom_layer_names_the_option(tmp_path: Path) -> None:
    path = zoo.save(zoo.custom_layer_model(), tmp_path / "custom.h5")

    with pytest.raises(ModelLoadError, match="--custom-objects"):
        load_model(path, ConvertOptions())


def test_a_custom_class_keras_cannot_deserialize_names_the_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from keras.src.saving import object_registration

    model = tf.keras.Sequential(
        [
            tf.keras.Input((3,), name="features"),
            tf.keras.layers.Dense(2, kernel_regularizer=custom_layers.HalfL2(), name="probs"),
        ]
    )
    # A class defined in the user's script: Keras saves it without a module.
    monkeypatch.setattr(custom_layers.HalfL2, "__module__", "__main__")
    model.save(tmp_path / "halfl2.keras")
    # Loaded in a fresh process, where nothing registered it.
    registered = f"{custom_layers.REGISTERED_PACKAGE}>HalfL2"
    monkeypatch.delitem(object_registration._GLOBAL_CUSTOM_OBJECTS, registered)
    monkeypatch.delitem(object_registration._GLOBAL_CUSTOM_NAMES, custom_layers.HalfL2)

    with pytest.raises(ModelLoadError) as caught:
        load_model(tmp_path / "halfl2.keras", ConvertOptions())

    assert "Cannot deserialize object of type `HalfL2`" in str(caught.value)
    assert "--custom-objects MODULE" in str(caught.value)


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_custom_layers_convert_with_custom_objects(suffix: str, tmp_path: Path) -> None:
    path = zoo.save(zoo.custom_layer_model(), tmp_path / f"custom{suffix}")

    code, output = _convert(
        path,
        tmp_path / "b",
        "--custom-objects",
        "tests.converters.custom_layers",
        "--custom-objects",
        "tests.converters.custom_layers:Offset",
    )

    assert code == 0, output
    _assert_every_target_passes(tmp_path / "b")
    assert verify_bundle(tmp_path / "b").artifacts["tfjs"]["format"] == "graph-model"


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_a_lambda_model_without_the_flag_says_which_flag_to_pass(
    suffix: str, tmp_path: Path
) -> None:
    path = zoo.save(zoo.lambda_model(), tmp_path / f"lambda{suffix}")

    code, output = _convert(path, tmp_path / "b")

    assert code == 1
    assert "layer 'affine' is a Lambda layer" in output
    assert "--unsafe-deserialization" in output
    assert "Traceback" not in output
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_a_lambda_model_converts_with_unsafe_deserialization(suffix: str, tmp_path: Path) -> None:
    path = zoo.save(zoo.lambda_model(), tmp_path / f"lambda{suffix}")

    code, output = _convert(path, tmp_path / "b", "--unsafe-deserialization")

    assert code == 0, output
    _assert_every_target_passes(tmp_path / "b")
    np.save(tmp_path / "x.npy", np.ones((2, 4), np.float32))
    _, got = predict_bundle(tmp_path / "b", "tflite", tmp_path / "x.npy")
    assert got[0].shape == (2, 2)
    # The bundle's Keras copy still holds the bytecode: it loads only where allowed.
    with pytest.raises(ConversionError, match="layer 'affine' is a Lambda layer"):
        predict_bundle(tmp_path / "b", "keras", tmp_path / "x.npy")


def test_a_bad_custom_objects_option_exits_2_without_a_bundle(tmp_path: Path) -> None:
    path = zoo.save(zoo.custom_layer_model(), tmp_path / "custom.keras")

    code, output = _convert(path, tmp_path / "b", "--custom-objects", "no_such_module_here")

    assert code == 2
    assert "cannot import 'no_such_module_here'" in output
    assert not (tmp_path / "b").exists()
