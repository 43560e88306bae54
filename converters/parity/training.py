"""Check the TFLite training artifact against Keras: one optimizer step each.

Both start from the same weights and take one step on the same batch with
the artifact's loss (:class:`~fedge.converters.targets.training_loss.TrainingLoss`),
optimizer (fresh: plain SGD, or the compiled Adam or SGD with momentum,
:mod:`~fedge.converters.targets.training_optimizer`) and learning rate (the
compiled rate, else 0.05). What is judged is the step, not the weights: one
step at a small learning rate moves a weight by 1e-6 or less, so the weights
afterwards match Keras's within any absolute bound even when ``train`` does
nothing. The TFLite step's change of the weights is compared with Keras's
change, relative to the size (L2 norm) of Keras's change: 1 % by default, so
a step that changes nothing is 100 % off (``--tolerance tflite_train=rel:N``
to change it; ``tflite_train=N`` bounds the weights' absolute difference
instead). The labels disagree with the model a little, so the gradient is
not zero.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fedge.converters.options import TRAIN_TARGET, TRAIN_TOLERANCE, Tolerance
from fedge.converters.parity.compare import ParityReport, unverified
from fedge.converters.source.model_io import input_specs
from fedge.converters.targets.training_loss import TrainingLoss

__all__ = ["STOCHASTIC_LAYERS", "TRAIN_TOLERANCE", "StepChange", "check_train_step", "judge_step"]

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
    step = StepChange.of(model.get_weights(), expected, [got[k] for k in keys])
    kind = optimizer.name if optimizer.stateful else "SGD"
    return judge_step(step, tolerance, rate, len(xs[0]), kind)


@dataclass(frozen=True)
class StepChange:
    """How far one optimizer step moved the weights in Keras and in TFLite.

    Differences are taken in float64: the change is far smaller than the
    weights, and float32 subtraction would round much of it away.
    """

    keras_size: float  # L2 norm of Keras's change of all weights
    tflite_size: float  # the same for the TFLite step
    difference: float  # L2 norm of (TFLite's change - Keras's change)
    max_abs_err: float  # largest difference of a weight after the two steps

    @classmethod
    def of(
        cls,
        before: Sequence[npt.NDArray[Any]],
        keras_after: Sequence[npt.NDArray[Any]],
        tflite_after: Sequence[npt.NDArray[Any]],
    ) -> StepChange:
        keras_sq = tflite_sq = diff_sq = 0.0
        worst = 0.0
        for w0, wk, wt in zip(before, keras_after, tflite_after, strict=True):
            start = np.asarray(w0, np.float64)
            keras = np.asarray(wk, np.float64) - start
            tflite = np.asarray(wt, np.float64).reshape(start.shape) - start
            keras_sq += float(np.sum(keras**2))
            tflite_sq += float(np.sum(tflite**2))
            diff_sq += float(np.sum((tflite - keras) ** 2))
            worst = max(worst, float(np.max(np.abs(tflite - keras), initial=0.0)))
        return cls(
            float(np.sqrt(keras_sq)), float(np.sqrt(tflite_sq)), float(np.sqrt(diff_sq)), worst
        )

    @property
    def relative_error(self) -> float:
        """The TFLite step's distance from Keras's, in units of Keras's step."""
        return self.difference / self.keras_size if self.keras_size > 0 else float("inf")


def judge_step(
    step: StepChange, tolerance: Tolerance, rate: float, samples: int, kind: str = "SGD"
) -> ParityReport:
    """Pass when every bound the tolerance gives holds for the step."""
    what = f"weights after one {kind} step (learning rate {rate:g})"
    if step.keras_size == 0:
        return unverified(
            tolerance,
            "fp32",
            f"{what}: Keras's step changed no weight, so a step that does nothing "
            "cannot be told from one that works",
        )
    rel, err = step.relative_error, step.max_abs_err
    if not (np.isfinite(rel) and np.isfinite(err)):
        problems = ["non-finite weights after the TFLite step"]
    else:
        problems = []
        if tolerance.max_rel_err is not None and rel > tolerance.max_rel_err:
            problems.append(
                f"the TFLite step changed the weights {rel:.3g} of Keras's step size away from "
                f"Keras's change > {tolerance.max_rel_err:.3g} "
                f"({_times(rel, tolerance.max_rel_err)} the tolerance of {TRAIN_TARGET})"
                + ("; the TFLite step changed no weight" if step.tflite_size == 0 else "")
            )
        if tolerance.max_abs_err is not None and err > tolerance.max_abs_err:
            problems.append(
                f"they differ from Keras by {err:.3g} > {tolerance.max_abs_err:.3g} "
                f"({_times(err, tolerance.max_abs_err)} the tolerance of {TRAIN_TARGET})"
            )
    return ParityReport(
        status="fail" if problems else "pass",
        samples=samples,
        max_abs_err=err,
        top1_agreement=None,
        tolerance=tolerance,
        precision="fp32",
        reason=(
            f"{what}: " + "; ".join(problems)
            if problems
            else f"{what}: as Keras's within {rel:.2g} of its size (max diff {err:.2g})"
        ),
        max_rel_err=rel,
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
