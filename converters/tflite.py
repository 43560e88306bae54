"""Keras -> TensorFlow Lite: the inference flatbuffer, quantized on request.

| ``--quantize`` | weights | activations | calibration |
|---|---|---|---|
| none (default) | float32 | float32 | - |
| fp16 | float16 | float32 | - |
| dynamic | int8 | float32 (int8 kernels where possible) | - |
| int8 | int8 | int8 (float fallback for ops without int8 kernels) | representative set |

The inference model uses TFLite builtin ops only, so it runs on any
device's stock interpreter. Recurrent layers convert to TFLite's fused
kernels only with a fixed batch; such models are exported at batch 1 and
the manifest says so. The training artifact is written beside it by
:mod:`fedge.converters.tflite_training`.
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
from fedge.converters.model_io import input_specs, output_specs
from fedge.converters.options import ConvertOptions
from fedge.converters.samples import load_samples

TARGET = "tflite"
MODEL_FILE = "model.tflite"


def export(model: Any, bundle_dir: Path, options: ConvertOptions) -> Artifact:
    started = time.perf_counter()
    out_dir = bundle_dir / TARGET
    out_dir.mkdir(parents=True, exist_ok=True)
    flatbuffer, batch_size = _convert(model, options)
    (out_dir / MODEL_FILE).write_bytes(flatbuffer)
    paths = [out_dir / MODEL_FILE]
    record: dict[str, Any] = {
        "quantization": options.tflite_quantize,
        "ops": "TFLITE_BUILTINS",
        "batch_size": batch_size,
        "signature": "serving_default",
        "inputs": [name for name, _, _ in input_specs(model)],
        "outputs": [name for name, _, _ in output_specs(model)],
        "training": None,
    }
    if options.tflite_training:
        from fedge.converters.tflite_training import export_training

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


def _convert(model: Any, options: ConvertOptions) -> tuple[bytes, int | None]:
    """The flatbuffer and its fixed batch size (None: any batch)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    _configure(converter, model, options)
    try:
        return _run_converter(converter), None
    except Exception as exc:
        if "TensorList" not in str(exc):
            raise _explain(exc, model) from exc
    # Recurrent layers: TFLite fuses them only when the batch is static.
    specs = [
        tf.TensorSpec((1, *t.shape[1:]), t.dtype, name=n)
        for t, (n, _, _) in zip(model.inputs, input_specs(model), strict=True)
    ]
    function = tf.function(lambda *xs: model(list(xs) if len(xs) > 1 else xs[0]))
    concrete = function.get_concrete_function(*specs)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)
    _configure(converter, model, options)
    try:
        return _run_converter(converter), 1
    except Exception as exc:
        raise _explain(exc, model) from exc


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
        samples = load_samples(
            model,
            options.calibration_path or options.samples_path,
            max_samples=200,
            seed=options.seed,
        )

        def representative() -> Any:
            for i in range(samples.count):
                yield [a[i : i + 1].astype(np.float32) for a in samples.arrays]

        converter.representative_dataset = representative


def _explain(exc: Exception, model: Any) -> Exception:
    """Name the layer whose TF ops the converter could not take, if any."""
    text = str(exc)
    ops = sorted(set(re.findall(r"'tf\.([A-Za-z0-9]+)' op", text)))
    layer = _layer_with_ops(model, ops) if ops else None
    if layer is not None:
        detail = f"TFLite builtin ops lack {', '.join(f'tf.{op}' for op in ops)}"
        return UnsupportedLayerError(TARGET, layer.name, type(layer).__name__, detail)
    first = next((line for line in text.splitlines() if "error" in line), text[:300])
    return TargetFailedError(TARGET, first.strip())


def _layer_with_ops(model: Any, op_types: Sequence[str]) -> Any:
    """The first layer whose traced graph contains one of ``op_types``."""
    import tensorflow as tf

    specs = [tf.TensorSpec(t.shape, t.dtype) for t in model.inputs]
    function = tf.function(lambda *xs: model(list(xs) if len(xs) > 1 else xs[0]))
    graph = function.get_concrete_function(*specs).graph
    by_name = {layer.name: layer for layer in model.layers}
    for operation in graph.get_operations():
        if operation.type in op_types:
            for part in operation.name.split("/"):
                if part in by_name:
                    return by_name[part]
    return None


class TfLitePredictor:
    """The inference flatbuffer in ``tf.lite.Interpreter``, via its signature."""

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
        self._runner = self._interpreter.get_signature_runner()
        details = self._runner.get_input_details()
        self._dtypes = {name: details[name]["dtype"] for name in details}

    def predict(self, inputs: Sequence[npt.NDArray[Any]]) -> list[npt.NDArray[Any]]:
        if self._batch_size is None:
            return self._run(inputs)
        rows = int(inputs[0].shape[0])
        parts = [self._run([x[i : i + 1] for x in inputs]) for i in range(rows)]
        return [np.concatenate([p[k] for p in parts]) for k in range(len(self._outputs))]

    def _run(self, inputs: Sequence[npt.NDArray[Any]]) -> list[npt.NDArray[Any]]:
        if self._batch_size is not None:
            # Fused recurrent kernels keep their state in variables between
            # invocations; each example starts from zero state, as in Keras.
            self._interpreter.reset_all_variables()
        feed = {
            name: np.asarray(x, dtype=self._dtypes[name])
            for name, x in zip(self._inputs, inputs, strict=True)
        }
        result = self._runner(**feed)
        if len(self._outputs) == 1 and len(result) == 1:
            return [next(iter(result.values()))]
        return [result[name] for name in self._outputs]


def load_predictor(bundle_dir: Path, record: Mapping[str, Any]) -> TfLitePredictor:
    return TfLitePredictor(
        bundle_dir / record["entry"],
        record["inputs"],
        record["outputs"],
        record.get("batch_size"),
    )
