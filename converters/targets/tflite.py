"""Keras (or a plain SavedModel's signature) -> TensorFlow Lite: the
inference flatbuffer, quantized on request.

| ``--quantize`` | weights | activations | calibration |
|---|---|---|---|
| none (default) | float32 | float32 | - |
| fp16 | float16 | float32 | - |
| dynamic | int8 | float32 (int8 kernels where possible) | - |
| int8 | int8 | int8 (float fallback for ops without int8 kernels) | representative set |

The inference model uses TFLite builtin ops only, so it runs on any
device's stock interpreter, and it keeps no state between invocations: a
Keras model is converted from :func:`fedge.converters.targets.serving.serving_function`,
where recurrent layers are unrolled (any batch) or, for sequences of varying
length, a while loop at a fixed batch of 1; the record's ``inputs``, its
``notes`` and the model card then say so. The record's ``inputs`` and
``outputs`` are the flatbuffer's own signature (names, shapes, dtypes), read
back after conversion. The training artifact is written beside it by
:mod:`fedge.converters.targets.tflite_training`.
"""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fedge.converters.artifact import Artifact, describe_files
from fedge.converters.errors import BundleError, TargetFailedError, UnsupportedLayerError
from fedge.converters.options import ConvertOptions
from fedge.converters.parity.samples import calibration_samples
from fedge.converters.source.model_io import input_specs, output_specs, source_kind
from fedge.converters.targets.serving import layer_with_ops, recurrent_layers, serving_function

TARGET = "tflite"
MODEL_FILE = "model.tflite"
SIGNATURE = "serving_default"
STATIC_BATCH_NOTE = (
    "takes a batch of 1 per call: its recurrent layers read sequences of varying length, "
    "which TFLite's builtin ops loop over only at a fixed batch"
)


def export(model: Any, bundle_dir: Path, options: ConvertOptions) -> Artifact:
    started = time.perf_counter()
    out_dir = bundle_dir / TARGET
    out_dir.mkdir(parents=True, exist_ok=True)
    flatbuffer, batch_size = _convert(model, options)
    (out_dir / MODEL_FILE).write_bytes(flatbuffer)
    paths = [out_dir / MODEL_FILE]
    inputs, outputs = _in_model_order(model, *_signature_specs(out_dir / MODEL_FILE))
    record: dict[str, Any] = {
        "quantization": options.tflite_quantize,
        "ops": "TFLITE_BUILTINS",
        "batch_size": batch_size,
        "signature": SIGNATURE,
        "inputs": inputs,
        "outputs": outputs,
        "notes": _notes(model, batch_size),
        "training": None,
    }
    if options.tflite_training and source_kind(model) == "keras":
        from fedge.converters.targets.tflite_training import export_training

        training = export_training(model, out_dir)
        if training is not None:
            paths.append(out_dir / training["file"])
            training["path"] = f"{TARGET}/{training.pop('file')}"
        record["training"] = training
    return Artifact(
        target=TARGET,
        entry=f"{TARGET}/{MODEL_FILE}",
        files=describe_files(bundle_dir, paths),
        options=record,
        seconds=time.perf_counter() - started,
    )


def _notes(model: Any, batch_size: int | None) -> list[str]:
    """What a user of the flatbuffer must know that its signature does not say."""
    if batch_size is None:
        return []
    if source_kind(model) == "keras":
        return [STATIC_BATCH_NOTE]
    return [f"takes a batch of {batch_size} per call, as the SavedModel's signature does"]


def _convert(model: Any, options: ConvertOptions) -> tuple[bytes, int | None]:
    """The flatbuffer and its fixed batch size (None: any batch)."""
    import tensorflow as tf

    if source_kind(model) == "saved_model":
        converter = tf.lite.TFLiteConverter.from_saved_model(
            str(model.path), signature_keys=[model.signature]
        )
        _configure(converter, model, options)
        try:
            return _run_converter(converter), model.input_specs[0][1][0]
        except Exception as exc:
            raise _explain(exc, model) from exc
    try:
        return _from_function(model, options, batch=None), None
    except Exception as exc:
        # A recurrence over sequences of varying length stays a loop, whose
        # tensor lists TFLite lowers to builtin ops only at a fixed batch.
        if "TensorList" not in str(exc) or not recurrent_layers(model):
            raise _explain(exc, model) from exc
    try:
        return _from_function(model, options, batch=1), 1
    except Exception as exc:
        raise _explain(exc, model) from exc


def _from_function(model: Any, options: ConvertOptions, batch: int | None) -> bytes:
    import tensorflow as tf

    function = serving_function(model, batch)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], model)
    _configure(converter, model, options)
    return _run_converter(converter)


def _signature_specs(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The flatbuffer's serving signature: name, shape (None where any size
    goes) and dtype of each input and output, in the signature's order."""
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=str(path))
    runner = interpreter.get_signature_runner(SIGNATURE)
    names = interpreter.get_signature_list()[SIGNATURE]

    def describe(details: Mapping[str, Any], order: Sequence[str]) -> list[dict[str, Any]]:
        return [
            {
                "name": name,
                "shape": [None if d < 0 else int(d) for d in details[name]["shape_signature"]],
                "dtype": np.dtype(details[name]["dtype"]).name,
            }
            for name in order
        ]

    return (
        describe(runner.get_input_details(), names["inputs"]),
        describe(runner.get_output_details(), names["outputs"]),
    )


def _in_model_order(
    model: Any, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The signature's specs in the model's (the manifest's) order; the
    signature must name every input and output as the model does."""
    ordered = []
    for kind, got, specs in (
        ("inputs", inputs, input_specs(model)),
        ("outputs", outputs, output_specs(model)),
    ):
        by_name = {x["name"]: x for x in got}
        want = [name for name, _, _ in specs]
        if sorted(by_name) != sorted(want):
            raise TargetFailedError(
                TARGET,
                f"the flatbuffer's signature names its {kind} {sorted(by_name)}, the model {want}",
            )
        ordered.append([by_name[name] for name in want])
    return ordered[0], ordered[1]


def _run_converter(converter: Any) -> bytes:
    with warnings.catch_warnings():
        # int8 with float inputs: TFLite warns that it adds its own input
        # quantization, which is what we want.
        warnings.filterwarnings("ignore", "Statistics for quantized inputs", UserWarning)
        return bytes(converter.convert())


def _configure(converter: Any, model: Any, options: ConvertOptions) -> None:
    import tensorflow as tf

    mode = options.tflite_quantize
    if mode == "none":
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "int8":
        samples = calibration_samples(model, options)

        def representative() -> Any:
            # Each input in its own dtype (load_samples cast it to the model's):
            # the calibrator refuses float32 for an int32 token-id input.
            for i in range(samples.count):
                yield [a[i : i + 1] for a in samples.arrays]

        converter.representative_dataset = representative


def _explain(exc: Exception, model: Any) -> Exception:
    """Name the layer whose TF ops the converter could not take, if any."""
    text = str(exc)
    ops = sorted(set(re.findall(r"'tf\.([A-Za-z0-9]+)' op", text)))
    layer = layer_with_ops(model, ops) if ops else None
    if layer is not None:
        detail = f"TFLite builtin ops lack {', '.join(f'tf.{op}' for op in ops)}"
        return UnsupportedLayerError(TARGET, layer.name, type(layer).__name__, detail)
    first = next((line for line in text.splitlines() if "error" in line), text[:300])
    return TargetFailedError(TARGET, first.strip())


class TfLitePredictor:
    """The inference flatbuffer in ``tf.lite.Interpreter``, via its signature.

    One interpreter serves every call, and nothing is reset between
    invocations: a model that kept state from one call to the next would
    give other numbers for the same input, and parity would fail it."""

    def __init__(
        self, path: Path, inputs: Sequence[str], outputs: Sequence[str], batch_size: int | None
    ) -> None:
        import tensorflow as tf

        if not path.is_file():
            raise BundleError(f"missing TFLite model: {path}")
        self._interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=1)
        self._inputs = list(inputs)
        self._outputs = list(outputs)
        self._batch_size = batch_size
        self._interpreter.allocate_tensors()
        self._runner = self._interpreter.get_signature_runner(SIGNATURE)
        details = self._runner.get_input_details()
        self._dtypes = {name: details[name]["dtype"] for name in details}
        named = self._interpreter.get_signature_list()[SIGNATURE]["outputs"]
        if len(self._outputs) == 1 and len(named) == 1:
            # Older bundles named a recurrent model's lone output as Keras does
            # ("dense_3") where its signature says "output_0".
            self._outputs = list(named)

    def predict(self, inputs: Sequence[npt.NDArray[Any]]) -> list[npt.NDArray[Any]]:
        if self._batch_size is None:
            return self._run(inputs)
        rows = int(inputs[0].shape[0])
        step = self._batch_size
        parts = [self._run(_padded(inputs, start, step)) for start in range(0, rows, step)]
        return [np.concatenate([p[k] for p in parts])[:rows] for k in range(len(self._outputs))]

    def _run(self, inputs: Sequence[npt.NDArray[Any]]) -> list[npt.NDArray[Any]]:
        feed = {
            name: np.asarray(x, dtype=self._dtypes[name])
            for name, x in zip(self._inputs, inputs, strict=True)
        }
        result = self._runner(**feed)
        return [result[name] for name in self._outputs]


def _padded(inputs: Sequence[npt.NDArray[Any]], start: int, size: int) -> list[npt.NDArray[Any]]:
    """Rows ``start:start+size`` of each input, the last row repeated to ``size``."""
    chunks = [np.asarray(x[start : start + size]) for x in inputs]
    short = size - int(chunks[0].shape[0])
    return [np.concatenate([c, np.repeat(c[-1:], short, 0)]) if short else c for c in chunks]


def load_predictor(bundle_dir: Path, record: Mapping[str, Any]) -> TfLitePredictor:
    """``record["inputs"]`` and ``["outputs"]`` are the signature's specs,
    or (in older bundles) names."""
    return TfLitePredictor(
        bundle_dir / record["entry"],
        [_name(x) for x in record["inputs"]],
        [_name(x) for x in record["outputs"]],
        record.get("batch_size"),
    )


def _name(spec: Any) -> str:
    return str(spec["name"]) if isinstance(spec, Mapping) else str(spec)
