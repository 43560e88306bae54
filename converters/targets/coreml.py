"""The Core ML target: a Keras 2 model as an ML program (``.mlpackage``).

``export`` writes ``<bundle>/coreml/model.mlpackage`` with coremltools;
``load_predictor`` runs it: with Core ML itself on macOS, elsewhere with
the NumPy MIL evaluator (:mod:`fedge.converters.targets.mil_numpy`), which is how
Linux checks Core ML parity.

The saved model's interface is the Keras model's, so an app and the
parity check see the same thing:

- inputs and outputs keep Keras's names and order; they are float32 (int32
  for integer inputs) whatever the precision, and an fp16 program casts
  inside, where the device would;
- the batch dimension is flexible, 1 to :data:`MAX_BATCH`;
- the probability output of a classifier stays a plain array in Keras's
  class order; class labels go into the metadata (``com.fedge.labels``,
  JSON) rather than a Core ML classifier, whose dictionary output would
  differ from Keras's.

The manifest record (``artifacts.coreml``) holds ``entry``, ``files`` and
these options, which ``load_predictor`` reads:

``precision``                  ``fp16`` | ``fp32`` (compute precision)
``minimum_deployment_target``  e.g. ``iOS16``
``input_names``                Core ML input names, in Keras's input order
``output_names``               Core ML output names, in Keras's output order
``max_batch``                  largest batch one prediction takes
``classifier``, ``labels``     whether the model is a classifier; its labels
``coremltools_version``        the converter that wrote the package
"""

from __future__ import annotations

import json
import platform
import re
import shutil
import time
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fedge.converters.artifact import Artifact, describe_files
from fedge.converters.errors import (
    BundleError,
    ConversionError,
    TargetFailedError,
    UnsupportedLayerError,
)
from fedge.converters.options import ConvertOptions
from fedge.converters.parity.predictor import Predictor
from fedge.converters.source.labels import check_labels
from fedge.converters.source.model_io import input_specs, output_specs, source_kind
from fedge.converters.targets.coreml_frontend import fixed_tensorflow_frontend
from fedge.converters.targets.registry import KERAS, SAVED_MODEL
from fedge.errors import ConfigError

TARGET = "coreml"
ENTRY = "coreml/model.mlpackage"
MAX_BATCH = 64
LABELS_KEY = "com.fedge.labels"

Array = npt.NDArray[Any]
Spec = tuple[str, tuple[int | None, ...], str]


def export(model: Any, bundle_dir: Path, options: ConvertOptions) -> Artifact:
    """Convert ``model`` and save it under ``bundle_dir/coreml/``."""
    import coremltools as ct

    started = time.perf_counter()
    inputs, outputs = input_specs(model), output_specs(model)
    labels = _labels(outputs, options.labels)
    # Keras keys its traced outputs by its own output names (a dict-output
    # model's layer names, not the manifest's names, which are the dict's keys).
    mlmodel = _convert(ct, model, inputs, _traced_output_names(model), options)
    spec = mlmodel.get_spec()
    output_names = _rename_outputs(ct, spec, [name for name, _, _ in outputs])
    _describe(spec, model, options, inputs, outputs, output_names, labels)
    package = bundle_dir / ENTRY
    if package.exists():
        shutil.rmtree(package)
    package.parent.mkdir(parents=True, exist_ok=True)
    try:
        ct.models.MLModel(spec, weights_dir=mlmodel.weights_dir, skip_model_load=True).save(
            str(package)
        )
    except Exception as exc:  # coremltools raises several types when saving
        raise TargetFailedError(TARGET, f"could not save {package}: {exc}") from exc
    record: dict[str, Any] = {
        "precision": options.coreml_precision,
        "minimum_deployment_target": options.coreml_minimum_target,
        "input_names": [name for name, _, _ in inputs],
        "output_names": output_names,
        "max_batch": MAX_BATCH,
        "classifier": _is_classifier(model, outputs),
        "labels": list(labels) if labels else None,
        "coremltools_version": ct.__version__,
    }
    return Artifact(
        target=TARGET,
        entry=ENTRY,
        files=describe_files(bundle_dir, [package]),
        options=record,
        seconds=time.perf_counter() - started,
    )


def _convert(
    ct: Any,
    model: Any,
    inputs: Sequence[Spec],
    output_names: Sequence[str],
    options: ConvertOptions,
) -> Any:
    """Run coremltools; its errors become UnsupportedLayerError or TargetFailedError."""
    tensor_types = []
    for name, shape, dtype in inputs:
        if any(d is None for d in shape[1:]):
            raise TargetFailedError(
                TARGET, f"input {name!r} has shape {shape}; Core ML needs every dim but batch fixed"
            )
        dims = (ct.RangeDim(1, MAX_BATCH, 1), *[d for d in shape[1:] if d is not None])
        np_dtype = np.int32 if dtype.startswith("int") else np.float32
        tensor_types.append(ct.TensorType(name=name, shape=ct.Shape(dims), dtype=np_dtype))
    precision = ct.precision.FLOAT16 if options.coreml_precision == "fp16" else ct.precision.FLOAT32
    try:
        deployment_target = getattr(ct.target, options.coreml_minimum_target)
    except AttributeError as exc:
        raise TargetFailedError(
            TARGET, f"unknown deployment target {options.coreml_minimum_target!r}"
        ) from exc
    with warnings.catch_warnings(), fixed_tensorflow_frontend():
        # coremltools 9 leaves its weights TemporaryDirectory to the garbage
        # collector, which warns; the weights are in the package by then.
        warnings.filterwarnings("ignore", "Implicitly cleaning up", ResourceWarning)
        try:
            return ct.convert(
                # A plain SavedModel is converted from its directory (its
                # serving signature); a Keras model is traced by coremltools.
                str(model.path) if source_kind(model) == SAVED_MODEL else model,
                source="tensorflow",
                convert_to="mlprogram",
                inputs=tensor_types,
                outputs=[
                    ct.TensorType(name=n, dtype=np.float32) for n in _graph_outputs(output_names)
                ],
                compute_precision=precision,
                minimum_deployment_target=deployment_target,
            )
        except Exception as exc:  # coremltools raises anything from its frontends
            error = _conversion_error(model, exc)
            # Release the failed conversion's locals (that directory) now, not
            # whenever the caller drops the exception.
            traceback.clear_frames(exc.__traceback__)
            raise error from exc


def _traced_output_names(model: Any) -> list[str]:
    """The names the traced function keys its outputs by: Keras's own output
    names (for a dict-output model its layer names, not the manifest's dict
    keys); a signature's structured output keys."""
    if source_kind(model) == SAVED_MODEL:
        return [name for name, _, _ in output_specs(model)]
    return list(model.output_names)


def _graph_outputs(keras_names: Sequence[str]) -> list[str | None]:
    """The TensorFlow graph's output names, listed in Keras's output order.

    coremltools needs them to set more than one output's dtype, and lists
    the outputs in the order given here. Keras traces the model as a
    function returning ``{output name: tensor}``, which TensorFlow
    flattens in sorted key order into ``Identity``, ``Identity_1``...
    """
    if len(keras_names) == 1:
        return [None]
    ranks = {name: i for i, name in enumerate(sorted(keras_names))}
    return [f"Identity_{ranks[n]}" if ranks[n] else "Identity" for n in keras_names]


def _conversion_error(model: Any, exc: BaseException) -> ConversionError:
    """Name the Keras layer behind a coremltools failure when it can be found.

    coremltools reports the TensorFlow node it could not convert, e.g.
    ``name: "model/disc/Bucketize"``; the node's path holds the layer name.
    """
    message = str(exc)
    first_line = message.strip().splitlines()[0] if message.strip() else type(exc).__name__
    layers = {layer.name: layer for layer in getattr(model, "layers", [])}
    paths = re.findall(r'name: "([^"]+)"', message) or re.findall(r"[\w.-]+(?:/[\w.-]+)+", message)
    for path in paths:
        for part in path.split("/"):
            if part in layers:
                layer = layers[part]
                return UnsupportedLayerError(TARGET, layer.name, type(layer).__name__, first_line)
    return TargetFailedError(TARGET, f"{type(exc).__name__}: {first_line}")


def _is_classifier(model: Any, outputs: Sequence[Spec]) -> bool:
    """One output of shape (batch, k >= 2) made by a softmax: class probabilities."""
    if len(outputs) != 1 or len(outputs[0][1]) != 2 or (outputs[0][1][1] or 0) < 2:
        return False
    if source_kind(model) != KERAS:
        return False
    try:
        layer = model.get_layer(outputs[0][0])
    except ValueError:
        return False
    activation = getattr(getattr(layer, "activation", None), "__name__", "")
    return type(layer).__name__ == "Softmax" or activation == "softmax"


def _labels(outputs: Sequence[Spec], labels: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """The labels to store: one per column of the one output (probabilities
    or logits), as for every target."""
    try:
        check_labels(outputs, labels)
    except ConfigError as exc:
        raise TargetFailedError(TARGET, str(exc)) from exc
    return labels or None


def _rename_outputs(ct: Any, spec: Any, keras_names: Sequence[str]) -> list[str]:
    """Give the outputs Keras's names (coremltools calls them ``Identity``...)."""
    taken = {feature.name for feature in spec.description.input}
    names = []
    for feature, wanted in zip(list(spec.description.output), keras_names, strict=True):
        if feature.name != wanted and wanted not in taken:
            ct.utils.rename_feature(spec, feature.name, wanted)
        taken.add(feature.name)
        names.append(feature.name)
    return names


def _describe(
    spec: Any,
    model: Any,
    options: ConvertOptions,
    inputs: Sequence[Spec],
    outputs: Sequence[Spec],
    output_names: Sequence[str],
    labels: Sequence[str] | None,
) -> None:
    """Author, version, description, feature descriptions and labels, in the spec."""
    meta = spec.description.metadata
    meta.author = options.author
    meta.versionString = options.version
    meta.shortDescription = options.description or f"{model.name}, converted by fedge"
    meta.userDefined["com.fedge.precision"] = options.coreml_precision
    if labels:
        meta.userDefined[LABELS_KEY] = json.dumps(list(labels))
    texts = {
        name: f"{dtype} {_shape_text(shape)}, batch 1 to {MAX_BATCH}"
        for name, shape, dtype in inputs
    }
    for name, (_, shape, _) in zip(output_names, outputs, strict=True):
        texts[name] = f"float32 {_shape_text(shape)}"
        if labels:
            texts[name] += f": class probabilities in the order of {LABELS_KEY}"
    for feature in [*spec.description.input, *spec.description.output]:
        if feature.name in texts:
            feature.shortDescription = texts[feature.name]


def _shape_text(shape: Sequence[int | None]) -> str:
    return "(" + ", ".join("batch" if d is None else str(d) for d in shape) + ")"


# --- running a saved package -------------------------------------------------


def load_predictor(bundle_dir: Path, record: Mapping[str, Any]) -> Predictor:
    """Core ML on macOS; the NumPy MIL evaluator elsewhere.

    Raises :class:`UnsupportedOpError` when the evaluator cannot compute
    some op of the program (parity is then unverified).
    """
    package = bundle_dir / str(record.get("entry", ENTRY))
    if not package.is_dir():
        raise BundleError(f"{TARGET}: {package} is missing")
    if platform.system() == "Darwin":
        return _CoreMLPredictor(package, record)
    return _MilPredictor(package, record)


Runner = Callable[[Mapping[str, Array]], Mapping[str, Array]]


def _predict_in_batches(
    run: Runner,
    input_names: Sequence[str],
    output_names: Sequence[str],
    inputs: Sequence[Array],
    max_batch: int,
) -> list[Array]:
    """Feed at most ``max_batch`` rows at a time (the model's declared range)."""
    if len(inputs) != len(input_names):
        raise ValueError(f"{len(inputs)} inputs given; the model takes {list(input_names)}")
    rows = int(np.shape(inputs[0])[0])
    if rows == 0:
        raise ValueError("no samples to predict")
    chunks: list[list[Array]] = [[] for _ in output_names]
    for start in range(0, rows, max_batch):
        feeds = {
            name: np.asarray(x[start : start + max_batch])
            for name, x in zip(input_names, inputs, strict=True)
        }
        result = run(feeds)
        for chunk, name in zip(chunks, output_names, strict=True):
            chunk.append(np.asarray(result[name], dtype=np.float32))
    return [np.concatenate(chunk) for chunk in chunks]


class _MilPredictor:
    """The saved program run by the NumPy MIL evaluator (any OS)."""

    def __init__(self, package: Path, record: Mapping[str, Any]) -> None:
        from fedge.converters.targets.mil_numpy import MilEvaluator, load_program

        self._evaluator = MilEvaluator(load_program(package))
        self._inputs = list(record.get("input_names") or self._evaluator.input_names)
        self._outputs = list(record.get("output_names") or self._evaluator.output_names)
        self._max_batch = int(record.get("max_batch", 1))

    def predict(self, inputs: Sequence[Array]) -> list[Array]:
        return _predict_in_batches(
            self._evaluator.run, self._inputs, self._outputs, inputs, self._max_batch
        )


class _CoreMLPredictor:
    """Core ML itself (macOS only)."""

    def __init__(self, package: Path, record: Mapping[str, Any]) -> None:
        import coremltools as ct

        self._model = ct.models.MLModel(str(package))
        description = self._model.get_spec().description
        self._inputs = list(record.get("input_names") or [f.name for f in description.input])
        self._outputs = list(record.get("output_names") or [f.name for f in description.output])
        self._max_batch = int(record.get("max_batch", 1))

    def _run(self, feeds: Mapping[str, Array]) -> Mapping[str, Array]:
        typed = {
            name: x.astype(np.int32 if np.issubdtype(x.dtype, np.integer) else np.float32)
            for name, x in feeds.items()
        }
        return {k: np.asarray(v) for k, v in self._model.predict(typed).items()}

    def predict(self, inputs: Sequence[Array]) -> list[Array]:
        return _predict_in_batches(self._run, self._inputs, self._outputs, inputs, self._max_batch)
