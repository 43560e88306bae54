"""The TFLite training artifact: a model a device can train with nothing
but ``tf.lite.Interpreter``.

Signatures (weights are keyed ``w000``, ``w001``, ... in the canonical
order of the manifest's ``weights`` list, trainable and non-trainable: the
keys of :attr:`fedge.weight_spec.ModelSpec.train_keys`):

| signature | inputs | outputs |
|---|---|---|
| ``infer`` | the model's inputs | ``output`` |
| ``train`` | the model's inputs, ``label``, ``learning_rate`` | ``loss`` |
| ``get_weights`` | - | ``w000`` ... |
| ``set_weights`` | ``w000`` ... | ``count`` |

``train`` takes one plain SGD step on the batch: the same update as Keras's
``SGD(learning_rate)`` on the mean loss of the batch. The loss is sparse
categorical cross-entropy for a softmax classifier, else mean squared
error. Models with several outputs get no training artifact.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from fedge.converters.errors import TargetFailedError
from fedge.converters.model_io import input_specs
from fedge.weight_spec import ModelSpec

TRAIN_FILE = "train.tflite"
SIGNATURES = ("infer", "train", "get_weights", "set_weights")


def loss_name(model: Any) -> str:
    last = model.layers[-1]
    activation = getattr(getattr(last, "activation", None), "__name__", "")
    shape = model.outputs[0].shape
    if activation == "softmax" and len(shape) == 2 and int(shape[-1]) > 1:
        return "sparse_categorical_crossentropy"
    return "mean_squared_error"


def export_training(model: Any, out_dir: Path) -> dict[str, Any] | None:
    """Write ``train.tflite``; returns its manifest record (None if not possible)."""
    if len(model.outputs) != 1:
        return None
    import tensorflow as tf

    module = _build_module(model)
    with tempfile.TemporaryDirectory(prefix="fedge-train-") as tmp:
        saved = Path(tmp) / "saved"
        tf.saved_model.save(
            module,
            str(saved),
            signatures={name: getattr(module, name).get_concrete_function() for name in SIGNATURES},
        )
        converter = tf.lite.TFLiteConverter.from_saved_model(
            str(saved), signature_keys=list(SIGNATURES)
        )
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS,
            tf.lite.OpsSet.SELECT_TF_OPS,
        ]
        converter.experimental_enable_resource_variables = True
        converter._experimental_lower_tensor_list_ops = False
        try:
            flatbuffer = converter.convert()
        except Exception as exc:
            raise TargetFailedError("tflite", f"training artifact: {exc}") from exc
    (out_dir / TRAIN_FILE).write_bytes(flatbuffer)
    return {
        "file": TRAIN_FILE,
        "signatures": list(SIGNATURES),
        "loss": loss_name(model),
        "optimizer": "sgd",
        "weight_keys": list(ModelSpec.from_keras(model).train_keys),
        "ops": "TFLITE_BUILTINS+SELECT_TF_OPS",
    }


def _build_module(model: Any) -> Any:
    import tensorflow as tf

    specs = [
        tf.TensorSpec((None, *shape[1:]), dtype, name=name)
        for name, shape, dtype in input_specs(model)
    ]
    out_shape = model.outputs[0].shape
    loss_kind = loss_name(model)
    if loss_kind == "sparse_categorical_crossentropy":
        label_spec = tf.TensorSpec((None,), tf.int32, name="label")
        loss_fn: Any = tf.keras.losses.SparseCategoricalCrossentropy()
    else:
        label_spec = tf.TensorSpec((None, *out_shape[1:]), tf.float32, name="label")
        loss_fn = tf.keras.losses.MeanSquaredError()
    lr_spec = tf.TensorSpec((), tf.float32, name="learning_rate")
    spec = ModelSpec.from_keras(model)
    weight_specs = [
        tf.TensorSpec(w.shape, w.dtype, name=key)
        for w, key in zip(spec, spec.train_keys, strict=True)
    ]

    def as_model_input(xs: tuple[Any, ...]) -> Any:
        return list(xs) if len(xs) > 1 else xs[0]

    class TrainableModel(tf.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        @tf.function(input_signature=specs)
        def infer(self, *xs: Any) -> dict[str, Any]:
            return {"output": self.model(as_model_input(xs), training=False)}

        @tf.function(input_signature=[*specs, label_spec, lr_spec])
        def train(self, *args: Any) -> dict[str, Any]:
            *xs, label, learning_rate = args
            with tf.GradientTape() as tape:
                prediction = self.model(as_model_input(tuple(xs)), training=True)
                loss = loss_fn(label, prediction)
            variables = self.model.trainable_variables
            for variable, grad in zip(variables, tape.gradient(loss, variables), strict=True):
                variable.assign_sub(learning_rate * grad)
            return {"loss": loss}

        @tf.function(input_signature=[])
        def get_weights(self) -> dict[str, Any]:
            return {
                key: tf.identity(w)
                for key, w in zip(spec.train_keys, self.model.weights, strict=True)
            }

        @tf.function(input_signature=weight_specs)
        def set_weights(self, *values: Any) -> dict[str, Any]:
            for variable, value in zip(self.model.weights, values, strict=True):
                variable.assign(value)
            return {"count": tf.constant(len(values), tf.int32)}

    return TrainableModel()
