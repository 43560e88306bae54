"""The table of targets: each target's exporter and its runtime.

Exporters have one signature, ``export(model, bundle_dir, options) ->
Artifact``, and write only under ``bundle_dir/<target>/``. Loaders have one
signature, ``load_predictor(bundle_dir, artifact_record) -> Predictor``
where ``artifact_record`` is the manifest's ``artifacts.<target>`` entry.
Modules are imported on first use: each pulls in a heavy converter.

A target also says which kinds of source model its exporter takes
(:func:`fedge.converters.model_io.source_kind`): a Keras model, and for some
a plain SavedModel's serving signature. Given another kind, the exporter
fails for that target alone, saying so.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedge.converters.artifact import Artifact
from fedge.converters.errors import TargetFailedError
from fedge.converters.model_io import source_kind
from fedge.converters.options import ConvertOptions
from fedge.converters.predictor import Predictor

Exporter = Callable[[Any, Path, ConvertOptions], Artifact]
Loader = Callable[[Path, Mapping[str, Any]], Predictor]


KERAS = "keras"
SAVED_MODEL = "saved_model"
SOURCE_NAMES = {KERAS: "a Keras model", SAVED_MODEL: "a plain SavedModel (not Keras)"}


@dataclass(frozen=True)
class Target:
    name: str
    module: str
    summary: str
    sources: frozenset[str] = frozenset({KERAS, SAVED_MODEL})

    def exporter(self) -> Exporter:
        export: Exporter = importlib.import_module(self.module).export
        if self.sources >= set(SOURCE_NAMES):
            return export

        def checked(model: Any, bundle_dir: Path, options: ConvertOptions) -> Artifact:
            kind = source_kind(model)
            if kind not in self.sources:
                takes = " or ".join(SOURCE_NAMES[s] for s in sorted(self.sources))
                raise TargetFailedError(
                    self.name,
                    f"fedge's {self.name} exporter takes {takes}; this is {SOURCE_NAMES[kind]}",
                )
            return export(model, bundle_dir, options)

        return checked

    def loader(self) -> Loader:
        fn: Loader = importlib.import_module(self.module).load_predictor
        return fn


TARGETS: dict[str, Target] = {
    "keras": Target(
        "keras", "fedge.converters.keras_target", "the source model (Keras, or a SavedModel)"
    ),
    "tflite": Target("tflite", "fedge.converters.tflite", "TensorFlow Lite flatbuffer"),
    "tfjs": Target(
        "tfjs", "fedge.converters.tfjs", "TensorFlow.js layers model (else a graph model)"
    ),
    # coremltools converts SavedModels too; fedge's Core ML exporter takes Keras only.
    "coreml": Target(
        "coreml",
        "fedge.converters.coreml",
        "Core ML mlprogram (.mlpackage)",
        sources=frozenset({KERAS}),
    ),
}
