"""The source model itself, kept in the bundle as the reference runtime.

``fedge predict --runtime keras`` and the parity checks run it; the server
uses it to evaluate and re-convert global checkpoints.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy.typing as npt

from fedge.converters.artifact import Artifact, describe_files
from fedge.converters.errors import BundleError
from fedge.converters.options import ConvertOptions

TARGET = "keras"
MODEL_FILE = "model.keras"


def export(model: Any, bundle_dir: Path, options: ConvertOptions) -> Artifact:
    started = time.perf_counter()
    out_dir = bundle_dir / TARGET
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save(out_dir / MODEL_FILE)
    return Artifact(
        target=TARGET,
        entry=f"{TARGET}/{MODEL_FILE}",
        files=describe_files(bundle_dir, [out_dir / MODEL_FILE]),
        options={"keras": "2", "format": "keras-v3"},
        seconds=time.perf_counter() - started,
    )


class KerasPredictor:
    def __init__(self, model: Any) -> None:
        self._model = model

    def predict(self, inputs: Sequence[npt.NDArray[Any]]) -> list[npt.NDArray[Any]]:
        feed = list(inputs) if len(inputs) > 1 else inputs[0]
        result = self._model.predict(feed, verbose=0, batch_size=256)
        return list(result) if isinstance(result, list) else [result]


def load_predictor(bundle_dir: Path, record: Mapping[str, Any]) -> KerasPredictor:
    import tensorflow as tf

    path = bundle_dir / record["entry"]
    if not path.is_file():
        raise BundleError(f"missing Keras model: {path}")
    return KerasPredictor(tf.keras.models.load_model(path, compile=False))
