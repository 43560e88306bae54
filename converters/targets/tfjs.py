"""Keras 2 -> TensorFlow.js (``tfjs/model.json`` + weight shards).

A layers model where tfjs-layers can build the model: the export goes
through tensorflowjs's own Keras HDF5 path (the one its ``save_keras_model``
uses), and the model can be trained in the browser. The converter happily
writes layers that tfjs-layers cannot build, so the model is checked
against what tfjs-layers 4.22 implements first (:func:`check_layers`), and
the Node runner's "Unknown layer" failure is turned into the same named
error. Keras' ``Normalization`` passes too: tfjs-layers lacks it, but
fedge's TF.js code registers it (``web/static/js/shared/normalization_layer.js``,
loaded by the page, the SDK and the Node runner; :data:`FEDGE_LAYERS`), so a
tabular model that normalizes its inputs trains in the browser. A model that
fails the check (Keras 2's default GRU, custom or Lambda layers), or a plain
SavedModel, becomes a graph model
instead (:mod:`fedge.converters.targets.tfjs_graph`): inference only, which the
record says (``format``, ``trainable: false`` and a note naming the layer).

Weights are sharded at ``ConvertOptions.tfjs_shard_bytes`` so browsers fetch
them in parallel and cache them, and optionally quantized to float16 or
uint8 to shrink the download.

Running (``load_predictor``, ``node_latency_us``) happens in Node with
``@tensorflow/tfjs`` (see :mod:`fedge.converters.targets.tfjs_node`), for both formats.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
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
from fedge.converters.source.model_io import input_specs, output_specs, source_kind
from fedge.converters.targets.tfjs_converter import QUANTIZATION_MAPS, import_tensorflowjs
from fedge.converters.targets.tfjs_graph import write_graph_model
from fedge.converters.targets.tfjs_node import NodeFailure, read_tensors, run_node, write_tensors
from fedge.errors import ConfigError

TARGET = "tfjs"
MODEL_FILE = "model.json"
LAYERS_MODEL = "layers-model"
GRAPH_MODEL = "graph-model"
GRAPH_MODEL_NOTE = "graph model, inference only (no training in the browser); no layers model"
TFJS_RUNTIME = "@tensorflow/tfjs 4.22.0"
# Layer classes registered by tfjs-layers 4.22 (its serialization map, less
# initializers, constraints, regularizers, optimizers and activations).
SUPPORTED_LAYERS: frozenset[str] = frozenset(
    # One block of names reads (and diffs against tfjs's list) better than 70 lines.
    """Activation Add AlphaDropout Average AveragePooling1D AveragePooling2D AveragePooling3D
    BatchNormalization Bidirectional CategoryEncoding CenterCrop Concatenate Conv1D Conv2D
    Conv2DTranspose Conv3D Conv3DTranspose ConvLSTM2D ConvLSTM2DCell Cropping2D Dense
    DepthwiseConv2D Dot Dropout ELU Embedding Flatten Functional GRU GRUCell GaussianDropout
    GaussianNoise GlobalAveragePooling1D GlobalAveragePooling2D GlobalMaxPooling1D
    GlobalMaxPooling2D Identity InputLayer LSTM LSTMCell LayerNormalization LeakyReLU Masking
    MaxPooling1D MaxPooling2D MaxPooling3D Maximum Minimum Model Multiply PReLU Permute RNN
    RandomWidth ReLU RepeatVector Rescaling Reshape Resizing SeparableConv2D Sequential
    SimpleRNN SimpleRNNCell Softmax SpatialDropout1D StackedRNNCells ThresholdedReLU
    TimeDistributed UpSampling2D ZeroPadding2D""".split()  # noqa: SIM905
)
# Layer classes fedge's own TF.js code registers before loading a model
# (web/static/js/shared/normalization_layer.js: Keras 2.14's math and weights).
FEDGE_LAYERS: frozenset[str] = frozenset({"Normalization"})
# Options tfjs-layers 4.22 rejects or ignores although the class exists.
_GRU_RESET_AFTER = (
    "tfjs-layers 4.22 implements GRU only with reset_after=False, and Keras 2 defaults to "
    "True; rebuild the layer with GRU(..., reset_after=False) and retrain"
)
_HDF5_LEGACY_WARNING = r"You are saving your model as an HDF5 file"
# Keras 2 writes its Conv base's kernel_* fields into SeparableConv2D's
# config although the layer has no such kernel; tfjs-layers refuses to build
# a SeparableConv2D that has them. Dropping them changes no computation.
_UNUSED_FIELDS = {
    "SeparableConv2D": ("kernel_initializer", "kernel_regularizer", "kernel_constraint")
}


def export(model: Any, bundle_dir: Path, options: ConvertOptions) -> Artifact:
    """Write ``bundle_dir/tfjs/`` (replacing what was there) and describe it."""
    started = time.perf_counter()
    if options.tfjs_quantize not in QUANTIZATION_MAPS:
        choices = ", ".join(QUANTIZATION_MAPS)
        raise ConfigError(
            f"--tfjs-quantize must be one of {choices}; got {options.tfjs_quantize!r}"
        )
    fallback = _why_graph_model(model)
    out = bundle_dir / TARGET
    if out.exists():
        shutil.rmtree(out)
    quantization_map = QUANTIZATION_MAPS[options.tfjs_quantize]
    try:
        if fallback is None:
            _write_layers_model(model, out, quantization_map, options.tfjs_shard_bytes)
        else:
            write_graph_model(model, out, options)
    except ConversionError:
        shutil.rmtree(out, ignore_errors=True)
        raise
    except Exception as exc:  # h5py, Keras and tensorflowjs raise many types.
        shutil.rmtree(out, ignore_errors=True)
        raise TargetFailedError(TARGET, f"{type(exc).__name__}: {exc}") from exc
    files = describe_files(bundle_dir, [out])
    if not any(f.path == f"{TARGET}/{MODEL_FILE}" for f in files):
        raise TargetFailedError(TARGET, f"the converter wrote no {MODEL_FILE} in {out}")
    from tensorflowjs import version

    return Artifact(
        target=TARGET,
        entry=f"{TARGET}/{MODEL_FILE}",
        files=files,
        options={
            "format": LAYERS_MODEL if fallback is None else GRAPH_MODEL,
            "trainable": fallback is None,
            "inputs": [name for name, _, _ in input_specs(model)],
            "outputs": [name for name, _, _ in output_specs(model)],
            "notes": [] if fallback is None else [f"{GRAPH_MODEL_NOTE}: {fallback}"],
            "quantization": options.tfjs_quantize,
            "shard_bytes": options.tfjs_shard_bytes,
            "weight_shards": sum(1 for f in files if f.path.endswith(".bin")),
            "converter": f"tensorflowjs {version.version}",
            "runtime": TFJS_RUNTIME,
        },
        seconds=time.perf_counter() - started,
    )


def _why_graph_model(model: Any) -> str | None:
    """Why the model cannot be a layers model, or None when it can."""
    if source_kind(model) == "saved_model":
        return "a plain SavedModel has no Keras layers"
    try:
        check_layers(model)
    except UnsupportedLayerError as exc:
        return str(exc).removeprefix(f"{TARGET}: ")
    return None


def check_layers(model: Any) -> None:
    """Raise :class:`UnsupportedLayerError` for the first layer TF.js cannot build."""
    for layer in _walk_layers(model):
        class_name = type(layer).__name__
        if class_name not in SUPPORTED_LAYERS | FEDGE_LAYERS:
            raise UnsupportedLayerError(
                TARGET, layer.name, class_name, "tfjs-layers 4.22 has no such layer class"
            )
        if class_name == "GRU" and getattr(layer, "reset_after", False):
            raise UnsupportedLayerError(TARGET, layer.name, class_name, _GRU_RESET_AFTER)
        if getattr(layer, "groups", 1) != 1:
            raise UnsupportedLayerError(
                TARGET, layer.name, class_name, "tfjs-layers 4.22 has no grouped convolutions"
            )


def _walk_layers(layer: Any) -> Iterator[Any]:
    """The layer, then what it contains: a model's layers, a wrapper's layer,
    an RNN's cell(s), at any depth."""
    yield layer
    children: list[Any] = list(getattr(layer, "layers", None) or [])
    for attribute in ("layer", "cell"):
        child = getattr(layer, attribute, None)
        if child is not None:
            children.append(child)
    children.extend(getattr(layer, "cells", None) or [])
    for child in children:
        if hasattr(child, "name") and hasattr(child, "get_config"):
            yield from _walk_layers(child)


def _write_layers_model(
    model: Any, out: Path, quantization_map: dict[str, bool] | None, shard_bytes: int
) -> None:
    """Keras -> HDF5 (in a temporary directory) -> model.json + group*.bin."""
    import h5py  # type: ignore[import-untyped]

    conversion = import_tensorflowjs("tensorflowjs.converters.keras_h5_conversion")
    with tempfile.TemporaryDirectory(prefix="fedge-tfjs-") as scratch:
        h5_path = Path(scratch) / "model.h5"
        with warnings.catch_warnings():
            # tensorflowjs reads Keras 2's HDF5 layout, which Keras calls legacy.
            warnings.filterwarnings("ignore", message=_HDF5_LEGACY_WARNING)
            model.save(h5_path, save_format="h5", include_optimizer=False)
        with h5py.File(h5_path, "r") as h5file:
            topology, weight_groups = conversion.h5_merged_saved_model_to_tfjs_format(h5file)
            _scope_bare_weight_names(conversion, h5file, weight_groups)
        out.mkdir(parents=True)
        conversion.write_artifacts(
            topology,
            weight_groups,
            str(out),
            quantization_dtype_map=quantization_map,
            weight_shard_size_bytes=shard_bytes,
        )
    _fit_config_to_tfjs_layers(out / MODEL_FILE)


def _scope_bare_weight_names(conversion: Any, h5file: Any, weight_groups: list[Any]) -> None:
    """Name every weight ``layer/variable``, as tfjs-layers names a layer's
    variables. Keras writes an adapted ``Normalization`` layer's ``mean``,
    ``variance`` and ``count`` without the layer's scope (they are made
    outside it), and tfjs would match a bare ``mean`` to no variable.

    The converter lists the weights layer by layer in the HDF5 file's order
    (one group, as :func:`h5_merged_saved_model_to_tfjs_format` writes it
    by default), so the n-th entry belongs to the layer that holds it."""
    owners = [
        layer_name
        for layer_name in (str(name) for name in h5file["model_weights"])
        for _ in conversion._convert_h5_group(h5file["model_weights"][layer_name])
    ]
    entries = [entry for group in weight_groups for entry in group]
    if len(owners) != len(entries):  # Not the layout described above: leave the names.
        return
    for owner, entry in zip(owners, entries, strict=True):
        if "/" not in entry["name"]:
            entry["name"] = f"{owner}/{entry['name']}"


def _fit_config_to_tfjs_layers(model_json: Path) -> None:
    """Change what Keras writes and tfjs-layers rejects, computing the same:
    config fields of no use (:data:`_UNUSED_FIELDS`), and a functional
    model's outputs given as a dict (``{"score": [layer, 0, 0], ...}``),
    which become a list in Keras's order (the keys sorted)."""
    document = json.loads(model_json.read_text())
    for node in _config_nodes(document["modelTopology"]):
        config = node["config"]
        for field in _UNUSED_FIELDS.get(str(node.get("class_name")), ()):
            config.pop(field, None)
        if isinstance(config.get("output_layers"), dict):
            outputs = config["output_layers"]
            config["output_layers"] = [outputs[key] for key in sorted(outputs)]
    model_json.write_text(json.dumps(document))


def _config_nodes(node: Any) -> Iterator[dict[str, Any]]:
    """Every ``{"class_name": ..., "config": {...}}`` object in a Keras topology."""
    if isinstance(node, dict):
        if "class_name" in node and isinstance(node.get("config"), dict):
            yield node
        for value in node.values():
            yield from _config_nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _config_nodes(value)


class TfjsPredictor:
    """Runs the bundle's TF.js model in Node, one ``node`` process per call.

    A process per call keeps nothing running between calls; starting node
    and tfjs costs about a second, so parity sends all samples at once.
    Inputs go by the model's input names (``inputs``) when given: a graph
    model takes them by name. Outputs come back in the order of ``outputs``
    when the model names them so (a graph model's signature does), else in
    the model's own order (a layers model's, which is Keras's).
    """

    def __init__(
        self,
        model_json: Path,
        timeout_s: float = 300.0,
        batch_size: int = 32,
        inputs: Sequence[str] = (),
        outputs: Sequence[str] = (),
    ) -> None:
        self.model_json = model_json
        self.timeout_s = timeout_s
        self.batch_size = batch_size
        self.inputs = list(inputs)
        self.outputs = list(outputs)

    def predict(self, inputs: Sequence[npt.NDArray[Any]]) -> list[npt.NDArray[Any]]:
        with tempfile.TemporaryDirectory(prefix="fedge-tfjs-io-") as scratch:
            in_dir, out_dir = Path(scratch) / "in", Path(scratch) / "out"
            write_tensors(in_dir, self._named(inputs))
            args = ["--inputs", str(in_dir), "--outputs", str(out_dir)]
            args += ["--batch-size", str(self.batch_size)]
            self._run("predict", args)
            named = read_tensors(out_dir)
        by_name = dict(named)
        if self.outputs and sorted(by_name) == sorted(self.outputs):
            return [by_name[name] for name in self.outputs]
        return [array for _, array in named]

    def _named(self, inputs: Sequence[npt.NDArray[Any]]) -> list[tuple[str, npt.NDArray[Any]]]:
        names = self.inputs if len(self.inputs) == len(inputs) else []
        names = names or [f"input_{i}" for i in range(len(inputs))]
        return [(name, np.asarray(x)) for name, x in zip(names, inputs, strict=True)]

    def latency_us(
        self, sample_inputs: Sequence[npt.NDArray[Any]], warmup: int, iters: int
    ) -> dict[str, float]:
        """Single-sample (batch 1) latency of ``model.predict`` in Node, in µs."""
        with tempfile.TemporaryDirectory(prefix="fedge-tfjs-io-") as scratch:
            in_dir = Path(scratch) / "in"
            write_tensors(in_dir, self._named([np.asarray(x)[:1] for x in sample_inputs]))
            args = ["--inputs", str(in_dir), "--warmup", str(warmup), "--iters", str(iters)]
            result = self._run("bench", args)
        keys = ("p50_us", "p90_us", "min_us", "mean_us", "warmup", "iters", "batch")
        return {key: float(result[key]) for key in keys}

    def _run(self, mode: str, args: list[str]) -> dict[str, Any]:
        try:
            return run_node(mode, self.model_json, args, self.timeout_s)
        except NodeFailure as failure:
            raise _explain(failure, self.model_json) from failure


def load_predictor(bundle_dir: Path, record: Mapping[str, Any]) -> TfjsPredictor:
    """A predictor for ``record["entry"]``; fails now if a listed file is missing."""
    model_json = bundle_dir / str(record.get("entry", f"{TARGET}/{MODEL_FILE}"))
    for path in _listed_files(model_json):
        if not path.is_file():
            raise BundleError(
                f"tfjs: {path.relative_to(bundle_dir).as_posix()} is missing "
                f"(listed in {model_json.name}); re-export or re-download the bundle"
            )
    return TfjsPredictor(
        model_json, inputs=record.get("inputs") or (), outputs=record.get("outputs") or ()
    )


def node_latency_us(
    bundle_dir: Path,
    record: Mapping[str, Any],
    sample_inputs: Sequence[npt.NDArray[Any]],
    warmup: int = 20,
    iters: int = 200,
) -> dict[str, float]:
    """p50 / p90 (and min, mean) µs of one batch-1 predict in Node, for benchmarks."""
    return load_predictor(bundle_dir, record).latency_us(sample_inputs, warmup, iters)


def _listed_files(model_json: Path) -> list[Path]:
    """model.json itself, then every weight shard its manifest names."""
    if not model_json.is_file():
        return [model_json]
    try:
        manifest = json.loads(model_json.read_text()).get("weightsManifest", [])
    except (OSError, ValueError) as exc:
        raise BundleError(f"tfjs: {model_json} is not valid JSON: {exc}") from exc
    shards = [model_json.parent / p for group in manifest for p in group.get("paths", [])]
    return [model_json, *shards]


def _explain(failure: NodeFailure, model_json: Path) -> Exception:
    """The runner's failure as fedge's error, naming the layer or file."""
    missing = str(failure.detail.get("class_name", "?"))
    if failure.kind == "unknown_layer":
        found = _find_layer(model_json, lambda n: n["class_name"] == missing)
        layer = str(found["config"].get("name", "?")) if found else "?"
        return UnsupportedLayerError(TARGET, layer, missing, "tfjs-layers 4.22 has no such class")
    if failure.kind == "unknown_activation":
        found = _find_layer(model_json, lambda n: _activation_id(n) == missing)
        if found is None:
            return TargetFailedError(TARGET, f"tfjs-layers 4.22 has no activation {missing!r}")
        activation = found["config"]["activation"]
        # A Python function is written as {"class_name": "function", "config": its name}.
        named = activation.get("config") if isinstance(activation, dict) else activation
        return UnsupportedLayerError(
            TARGET,
            str(found["config"].get("name", "?")),
            str(found["class_name"]),
            f"tfjs-layers 4.22 has no activation {named!r}; use a built-in one",
        )
    if failure.kind in ("missing_file", "bad_weights"):
        return BundleError(f"tfjs: {failure.message}")
    return TargetFailedError(TARGET, f"node: {failure.kind}: {failure.message}")


def _activation_id(node: dict[str, Any]) -> str | None:
    """The identifier tfjs looks an activation up by: its name or class_name."""
    activation = node["config"].get("activation")
    if isinstance(activation, dict):
        return str(activation.get("class_name"))
    return None if activation is None else str(activation)


def _find_layer(
    model_json: Path, matches: Callable[[dict[str, Any]], bool]
) -> dict[str, Any] | None:
    """The first layer object in model.json that ``matches``."""
    topology = json.loads(model_json.read_text()).get("modelTopology", {})
    return next((node for node in _config_nodes(topology) if matches(node)), None)
