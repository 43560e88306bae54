"""Check the TFLite training artifact against Keras: one optimizer step each.

Both start from the same weights and take one step on the same batch with
the artifact's loss (:class:`~fedge.converters.targets.training_loss.TrainingLoss`),
optimizer (fresh: plain SGD, or the compiled Adam or SGD with momentum,
:mod:`~fedge.converters.targets.training_optimizer`) and learning rate (the
compiled rate, else 0.05); the weights after the
step must agree within the tolerance (1e-5 by default, ``--tolerance
tflite_train=...`` to change it). The labels disagree with the model a
little, so the gradient is not zero.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fedge.converters.options import TRAIN_TARGET, TRAIN_TOLERANCE, Tolerance
from fedge.converters.parity.compare import ParityReport, unverified
from fedge.converters.source.model_io import input_specs
from fedge.converters.targets.training_loss import TrainingLoss

__all__ = ["STOCHASTIC_LAYERS", "TRAIN_TOLERANCE", "check_train_step"]

STOCHASTIC_LAYERS = (
    "Dropout",
    "SpatialDropout",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
)
DEFAULT_LEARNING_RATE = 0.05


def check_train_step(
    model: Any,
    bundle_dir: Path,
    record: Mapping[str, Any],
    inputs: Sequence[npt.NDArray[Any]],
    learning_rate: float | None = None,
    batch: int = 32,
    tolerance: Tolerance = TRAIN_TOLERANCE,
) -> ParityReport:
    stochastic = [
        layer.name
        for layer in model.layers
        if any(type(layer).__name__.startswith(s) for s in STOCHASTIC_LAYERS)
    ]
    if stochastic:
        return unverified(
            tolerance, "fp32", f"stochastic layers {stochastic} make one training step random"
        )
    import tensorflow as tf

    loss = TrainingLoss.from_record(dict(record))
    optimizer = loss.optimizer
    compiled = optimizer.learning_rate if optimizer.stateful else None
    rate = learning_rate or compiled or loss.learning_rate or DEFAULT_LEARNING_RATE
    xs = [np.asarray(x[:batch]) for x in inputs]
    keras_in = xs if len(xs) > 1 else xs[0]
    labels = _labels(loss, model.predict(keras_in, verbose=0))

    reference = tf.keras.models.clone_model(model)
    reference.set_weights(model.get_weights())
    reference.compile(optimizer=optimizer.keras(rate), loss=loss.keras())
    reference.train_on_batch(keras_in, labels)
    expected = reference.get_weights()

    interpreter = tf.lite.Interpreter(model_path=str(bundle_dir / record["path"]))
    keys = record["weight_keys"]
    interpreter.get_signature_runner("set_weights")(
        **{k: w for k, w in zip(keys, model.get_weights(), strict=True)}
    )
    feed = dict(zip([name for name, _, _ in input_specs(model)], xs, strict=True))
    interpreter.get_signature_runner("train")(**feed, label=labels, learning_rate=np.float32(rate))
    got = interpreter.get_signature_runner("get_weights")()
    err = max(float(np.max(np.abs(got[k] - w))) for k, w in zip(keys, expected, strict=True))
    bound = tolerance.max_abs_err if tolerance.max_abs_err is not None else 0.0
    ok = err <= bound
    kind = optimizer.name if optimizer.stateful else "SGD"
    step = f"weights after one {kind} step (learning rate {rate:g})"
    return ParityReport(
        status="pass" if ok else "fail",
        samples=len(xs[0]),
        max_abs_err=err,
        top1_agreement=None,
        tolerance=tolerance,
        precision="fp32",
        reason=(
            f"{step} differ from Keras by at most {err:.3g}"
            if ok
            else f"{step} differ from Keras by {err:.3g} > {bound:.3g} "
            f"({_times(err, bound)} the tolerance of {TRAIN_TARGET})"
        ),
    )


def _labels(loss: TrainingLoss, outputs: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Targets near the model's own outputs, for each kind of loss."""
    if loss.name in ("sparse_categorical_crossentropy", "categorical_crossentropy"):
        ids = np.roll(outputs.argmax(axis=-1), 1).astype(np.int32)
        if loss.name == "sparse_categorical_crossentropy":
            return ids
        one_hot: npt.NDArray[np.float32] = np.eye(outputs.shape[-1], dtype=np.float32)[ids]
        return one_hot
    if loss.name == "binary_crossentropy":
        probability = 1 / (1 + np.exp(-outputs)) if loss.from_logits else outputs
        flipped: npt.NDArray[np.float32] = np.less(probability, 0.5).astype(np.float32)
        return flipped  # the other side of 0.5 from the model
    return (outputs + 0.1).astype(np.float32)


def _times(err: float, bound: float) -> str:
    return f"{err / bound:.1f}x" if bound > 0 else "above"
