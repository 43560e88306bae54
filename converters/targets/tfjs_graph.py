"""TF.js graph models: for what tfjs-layers cannot build.

tfjs-layers 4.22 lacks some Keras layers (Keras 2's default
``GRU(reset_after=True)``, ``Normalization``, ``Discretization``...), custom
layers and ``Lambda``; a plain SavedModel has no layers at all. tensorflowjs
converts a SavedModel's signature to a *graph model* instead: the frozen
TensorFlow graph, run by ``tf.loadGraphModel``. It computes the same outputs
but cannot be trained in the browser (``trainable: false`` in the manifest).

A Keras model is first saved as a SavedModel whose one signature is
:func:`fedge.converters.targets.serving.serving_function` (inputs and outputs by
the manifest's names, recurrent layers stateless); a plain SavedModel's own
signature is converted as it is. Output names follow the signature's keys
(``use_structured_outputs_names``), which the Node runner reports. A loop (a
recurrence over sequences of varying length) stays TensorFlow 2 control flow
(``While`` and its body), which ``executeAsync`` runs.

tensorflowjs lets TensorFlow's optimizer fuse an activation into the matmul
or convolution before it; TensorFlow (with oneDNN) fuses ``Tanh``, which
TF.js's fused kernels lack ("Activation tanh has not been implemented for
the CPU backend"). Such an activation is split back out into its own op
(:func:`unfuse_activations`).
"""

from __future__ import annotations

import base64
import json
import re
import tempfile
from pathlib import Path
from typing import Any

from fedge.converters.errors import TargetFailedError, UnsupportedLayerError
from fedge.converters.options import ConvertOptions
from fedge.converters.source.model_io import source_kind
from fedge.converters.targets.serving import layer_with_ops, serving_function
from fedge.converters.targets.tfjs_converter import QUANTIZATION_MAPS, import_tensorflowjs

TARGET = "tfjs"
SIGNATURE = "serving_default"
FUSED_OPS = frozenset({"_FusedMatMul", "_FusedConv2D", "FusedDepthwiseConv2dNative"})
# Activations TensorFlow fuses into a matmul or convolution that TF.js 4.22's
# fused kernels lack (they apply Relu, Relu6, Elu, LeakyRelu, Prelu and
# Sigmoid themselves), and that are TensorFlow ops of their own.
SPLIT_ACTIVATIONS = frozenset({"Tanh"})


def write_graph_model(model: Any, out_dir: Path, options: ConvertOptions) -> None:
    """Write ``model.json`` and its weight shards into ``out_dir``."""
    conversion = import_tensorflowjs("tensorflowjs.converters.tf_saved_model_conversion_v2")
    with tempfile.TemporaryDirectory(prefix="fedge-tfjs-graph-") as scratch:
        if source_kind(model) == "saved_model":
            saved, signature = Path(model.path), model.signature
        else:
            saved, signature = Path(scratch) / "serving", SIGNATURE
            _save_serving_model(model, saved)
        try:
            conversion.convert_tf_saved_model(
                str(saved),
                str(out_dir),
                signature_def=signature,
                quantization_dtype_map=QUANTIZATION_MAPS[options.tfjs_quantize],
                weight_shard_size_bytes=options.tfjs_shard_bytes,
                use_structured_outputs_names=True,
                control_flow_v2=True,
            )
        except Exception as exc:  # tensorflowjs raises ValueError and others
            raise _explain(exc, model) from exc
        _name_signature_outputs(out_dir / "model.json", saved, signature)
    unfuse_activations(out_dir / "model.json")


def _name_signature_outputs(model_json: Path, saved: Path, signature: str) -> None:
    """Key each output of model.json's signature by its name in the SavedModel.

    tensorflowjs finds an output's key by matching shape and dtype, and keys
    it by its tensor name ("Identity_1:0") when two outputs look alike. The
    signature function's outputs, in order, are its sorted keys (tf.nest's
    order), which names each tensor.
    """
    import tensorflow as tf

    function = tf.saved_model.load(str(saved)).signatures[signature]
    keys = sorted(function.structured_outputs)
    by_tensor = {t.name: key for t, key in zip(function.outputs, keys, strict=True)}
    document = json.loads(model_json.read_text())
    outputs = document["signature"]["outputs"]
    document["signature"]["outputs"] = {
        by_tensor.get(info["name"], key): info for key, info in outputs.items()
    }
    model_json.write_text(json.dumps(document))


def unfuse_activations(model_json: Path) -> None:
    """Give each fused activation TF.js cannot apply an op of its own, after
    the fused op (which keeps its bias): ``X = _FusedMatMul[BiasAdd, Tanh]``
    becomes ``X/unfused = _FusedMatMul[BiasAdd]; X = Tanh(X/unfused)``."""
    document = json.loads(model_json.read_text())
    nodes = document["modelTopology"]["node"]
    split = []
    for node in nodes:
        attr = node.get("attr", {})
        fused = attr.get("fused_ops", {}).get("list", {}).get("s", [])
        if node.get("op") not in FUSED_OPS or not fused:
            continue
        last = base64.b64decode(fused[-1]).decode()
        if last not in SPLIT_ACTIVATIONS:
            continue
        inner = f"{node['name']}/unfused"
        split.append({"name": node["name"], "op": last, "input": [inner], "attr": {"T": attr["T"]}})
        node["name"] = inner
        attr["fused_ops"]["list"]["s"] = fused[:-1]
    if split:
        nodes.extend(split)
        model_json.write_text(json.dumps(document))


def _save_serving_model(model: Any, path: Path) -> None:
    """A SavedModel with one signature and the model's variables, and
    nothing of Keras (whose own SavedModel tracing fails on some layers)."""
    import tensorflow as tf

    function = serving_function(model)
    holder = tf.Module()
    holder.weights = list(model.weights)
    tf.saved_model.save(holder, str(path), signatures={SIGNATURE: function})


def _explain(exc: Exception, model: Any) -> Exception:
    """``Unsupported Ops in the model ... Bucketize`` names the layer when it can."""
    text = str(exc)
    match = re.search(r"Unsupported Ops in the model[^\n]*\n(.*)", text)
    if match is None:
        return TargetFailedError(TARGET, f"graph model: {type(exc).__name__}: {text[:300]}")
    ops = sorted({op.strip() for op in match.group(1).split(",") if op.strip()})
    detail = f"TF.js has no {', '.join(ops)} op (graph model)"
    layer = layer_with_ops(model, ops) if source_kind(model) == "keras" else None
    if layer is not None:
        return UnsupportedLayerError(TARGET, layer.name, type(layer).__name__, detail)
    return TargetFailedError(TARGET, detail)
