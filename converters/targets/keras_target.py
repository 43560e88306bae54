"""The source model itself, kept in the bundle as the reference runtime.

A Keras model is saved as ``keras/model.keras``; a plain SavedModel (see
:mod:`fedge.converters.source.signature_model`) is copied as ``keras/saved_model/``
(``format: saved-model``) and runs by its serving signature.
``fedge predict --runtime keras`` and the parity checks run it; the server
uses a Keras model to evaluate and re-convert global checkpoints.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy.typing as npt

from fedge.converters.artifact import Artifact, describe_files
from fedge.converters.errors import BundleError
from fedge.converters.options import ConvertOptions
from fedge.converters.parity.predictor import Predictor
from fedge.converters.source.model_io import output_names, python_lambda_layers, source_kind

TARGET = "keras"
MODEL_FILE = "model.keras"
SAVED_MODEL_DIR = "saved_model"
SAVED_MODEL_FORMAT = "saved-model"


def export(model: Any, bundle_dir: Path, options: ConvertOptions) -> Artifact:
    started = time.perf_counter()
    out_dir = bundle_dir / TARGET
    out_dir.mkdir(parents=True, exist_ok=True)
    if source_kind(model) == "saved_model":
        shutil.copytree(model.path, out_dir / SAVED_MODEL_DIR, dirs_exist_ok=True)
        return Artifact(
            target=TARGET,
            entry=f"{TARGET}/{SAVED_MODEL_DIR}",
            files=describe_files(bundle_dir, [out_dir / SAVED_MODEL_DIR]),
            options={"format": SAVED_MODEL_FORMAT, "signature": model.signature},
            seconds=time.perf_counter() - started,
        )
    model.save(out_dir / MODEL_FILE)
    return Artifact(
        target=TARGET,
        entry=f"{TARGET}/{MODEL_FILE}",
        files=describe_files(bundle_dir, [out_dir / MODEL_FILE]),
        options={"keras": "2", "format": "keras-v3"},
        seconds=time.perf_counter() - started,
    )


class KerasPredictor:
    """A Keras model's ``predict``: one array per output, in the order of
    :func:`~fedge.converters.source.model_io.output_specs` (a dict-output model's
    outputs by key)."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self._names = output_names(model)

    def predict(self, inputs: Sequence[npt.NDArray[Any]]) -> list[npt.NDArray[Any]]:
        feed = list(inputs) if len(inputs) > 1 else inputs[0]
        result = self._model.predict(feed, verbose=0, batch_size=256)
        if isinstance(result, dict):
            return [result[name] for name in self._names]
        return list(result) if isinstance(result, list) else [result]


def load_predictor(bundle_dir: Path, record: Mapping[str, Any]) -> Predictor:
    """The model of ``record["entry"]``. Keras loads it with the custom objects
    and the safe mode in force (:func:`fedge.converters.source.model_io.keras_scope`):
    a Lambda layer's stored code runs only where the caller allowed it."""
    path = bundle_dir / record["entry"]
    if record.get("format") == SAVED_MODEL_FORMAT:
        from fedge.converters.source.signature_model import SignatureModel

        if not (path / "saved_model.pb").is_file():
            raise BundleError(f"missing SavedModel: {path}")
        return SignatureModel.load(path, str(record.get("signature", "serving_default")))
    import tensorflow as tf
    from keras.src.saving.serialization_lib import in_safe_mode

    if not path.is_file():
        raise BundleError(f"missing Keras model: {path}")
    lambdas = python_lambda_layers(path)
    allowed = in_safe_mode() is False  # set by keras_scope(unsafe_deserialization=True)
    if lambdas and not allowed:
        raise BundleError(
            f"{path}: layer {lambdas[0]!r} is a Lambda layer, whose Python code would run "
            "as the model loads; the Keras runtime of this bundle loads only where that is "
            "allowed (fedge convert --unsafe-deserialization)"
        )
    return KerasPredictor(tf.keras.models.load_model(path, compile=False, safe_mode=not allowed))
