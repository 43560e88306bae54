"""The TFLite training artifact: a model a device can train with nothing
but ``tf.lite.Interpreter``.

Signatures (weights are keyed ``w000``, ``w001``, ... in the canonical
order of the manifest's ``weights`` list, trainable and non-trainable: the
keys of :attr:`fedge.wire.weight_spec.ModelSpec.train_keys`):

| signature | inputs | outputs |
|---|---|---|
| ``infer`` | the model's inputs | ``output`` |
| ``train`` | the model's inputs, ``label``, ``learning_rate`` | ``loss`` |
| ``get_weights`` | - | ``w000`` ... |
| ``set_weights`` | ``w000`` ... | ``count`` |

``train`` takes one step of the model's compiled optimizer on the batch
(plain SGD if it was compiled with SGD, not compiled, or with an optimizer
the artifact cannot take; Adam and SGD with momentum keep their state in the
artifact, zeroed by ``set_weights``: :mod:`.training_optimizer`): the same
update as Keras's optimizer at ``learning_rate`` on the mean loss of the
batch plus the model's regularisation penalties. The loss is the one the model was compiled with,
or ``--loss``, or a guess said to be one (:mod:`fedge.converters.targets.training_loss`);
the ``label`` is class ids (int32) for sparse categorical cross-entropy,
else float32 targets shaped like the output. Models with several outputs
get no training artifact (:func:`why_no_training` says so).
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from fedge.converters.artifact import Artifact, describe_files
from fedge.converters.errors import TargetFailedError
from fedge.converters.source.model_io import input_specs
from fedge.converters.targets.training_loss import TrainingLoss, loss_of
from fedge.converters.targets.training_optimizer import OptimizerSlots
from fedge.wire.weight_spec import ModelSpec

TRAIN_FILE = "train.tflite"
SIGNATURES = ("infer", "train", "get_weights", "set_weights")


def why_no_training(model: Any) -> str:
    """Why a model gets no training artifact, or "" when it can have one."""
    if len(model.outputs) != 1:
        return (
            f"the model has {len(model.outputs)} outputs; "
            "train.tflite is made for one-output models"
        )
    return ""


def export_training(
    model: Any, out_dir: Path, loss: TrainingLoss | None = None
) -> dict[str, Any] | None:
    """Write ``train.tflite``; returns its manifest record (None if not possible).

    ``loss``: by default the model object's compiled loss, or a guess."""
    if why_no_training(model):
        return None
    import tensorflow as tf

    loss = loss or loss_of(model)
    module = _build_module(model, loss)
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
        **loss.record(),
        "weight_keys": list(ModelSpec.from_keras(model).train_keys),
        "ops": "TFLITE_BUILTINS+SELECT_TF_OPS",
    }


def attach_training(
    model: Any, bundle_dir: Path, artifact: Artifact, loss: TrainingLoss
) -> Artifact:
    """The TFLite artifact with ``train.tflite`` written beside its model,
    listed and hashed, and described in its ``training`` record."""
    out_dir = (bundle_dir / artifact.entry).parent
    record = export_training(model, out_dir, loss)
    if record is None:
        raise TargetFailedError("tflite", f"training artifact: {why_no_training(model)}")
    path = out_dir / record.pop("file")
    record = {"path": path.relative_to(bundle_dir).as_posix(), **record}
    files = tuple(sorted((*artifact.files, *describe_files(bundle_dir, [path])), key=_by_path))
    return replace(artifact, files=files, options={**artifact.options, "training": record})


def without_training(bundle_dir: Path, artifact: Artifact, reason: str) -> Artifact:
    """The TFLite artifact with no training artifact (its file deleted, if
    any), and the reason in ``training_skipped``."""
    training = artifact.options.get("training")
    path = training["path"] if training else None
    if path is not None:
        (bundle_dir / path).unlink(missing_ok=True)
    return replace(
        artifact,
        files=tuple(f for f in artifact.files if f.path != path),
        options={**artifact.options, "training": None, "training_skipped": reason},
    )


def with_failed_training(artifact: Artifact, failure: str) -> Artifact:
    """The training artifact kept (``--keep-failed``) but marked as failed."""
    training = {**artifact.options["training"], "verified": False, "failure": failure}
    return replace(artifact, options={**artifact.options, "training": training})


def _by_path(file: Any) -> str:
    return str(file.path)


def _build_module(model: Any, loss: TrainingLoss) -> Any:
    import tensorflow as tf

    specs = [
        tf.TensorSpec((None, *shape[1:]), dtype, name=name)
        for name, shape, dtype in input_specs(model)
    ]
    out_shape = tuple(None if d is None else int(d) for d in model.outputs[0].shape)
    label_spec = tf.TensorSpec(loss.label_shape(out_shape), loss.label_dtype, name="label")
    loss_fn = loss.keras()
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
            self.slots = OptimizerSlots(loss.optimizer, model.trainable_variables)
            self.optimizer_state = self.slots.state  # tracked, so saved with the model

        @tf.function(input_signature=specs)
        def infer(self, *xs: Any) -> dict[str, Any]:
            return {"output": self.model(as_model_input(xs), training=False)}

        @tf.function(input_signature=[*specs, label_spec, lr_spec])
        def train(self, *args: Any) -> dict[str, Any]:
            *xs, label, learning_rate = args
            with tf.GradientTape() as tape:
                prediction = self.model(as_model_input(tuple(xs)), training=True)
                loss = loss_fn(label, prediction)
                if self.model.losses:  # regularisation penalties, as Keras adds them
                    loss += tf.add_n(self.model.losses)
            variables = self.model.trainable_variables
            self.slots.apply(variables, tape.gradient(loss, variables), learning_rate)
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
            self.slots.reset()  # a new base checkpoint: a fresh optimizer
            return {"count": tf.constant(len(values), tf.int32)}

    return TrainableModel()
