"""The table of targets: each target's exporter and its runtime.

Exporters have one signature, ``export(model, bundle_dir, options) ->
Artifact``, and write only under ``bundle_dir/<target>/``. Loaders have one
signature, ``load_predictor(bundle_dir, artifact_record) -> Predictor``
where ``artifact_record`` is the manifest's ``artifacts.<target>`` entry.
Modules are imported on first use: each pulls in a heavy converter.

Every exporter takes both kinds of source model
(:func:`fedge.converters.source.model_io.source_kind`): a Keras model, and a plain
SavedModel's serving signature.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedge.converters.artifact import Artifact
from fedge.converters.options import ConvertOptions
from fedge.converters.parity.predictor import Predictor

Exporter = Callable[[Any, Path, ConvertOptions], Artifact]
Loader = Callable[[Path, Mapping[str, Any]], Predictor]


KERAS = "keras"
SAVED_MODEL = "saved_model"


@dataclass(frozen=True)
class Target:
    name: str
    module: str
    summary: str

    def exporter(self) -> Exporter:
        export: Exporter = importlib.import_module(self.module).export
        return export

    def loader(self) -> Loader:
        fn: Loader = importlib.import_module(self.module).load_predictor
        return fn


TARGETS: dict[str, Target] = {
    "keras": Target(
        "keras",
        "fedge.converters.targets.keras_target",
        "the source model (Keras, or a SavedModel)",
    ),
    "tflite": Target("tflite", "fedge.converters.targets.tflite", "TensorFlow Lite flatbuffer"),
    "tfjs": Target(
        "tfjs", "fedge.converters.targets.tfjs", "TensorFlow.js layers model (else a graph model)"
    ),
    "coreml": Target(
        "coreml",
        "fedge.converters.targets.coreml",
        "Core ML mlprogram (.mlpackage)",
    ),
}
