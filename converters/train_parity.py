"""Check the TFLite training artifact against Keras: one SGD step each.

Both start from the same weights and take one step on the same batch; the
weights after the step must agree within the tolerance (1e-5 by default).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fedge.converters.model_io import input_specs
from fedge.converters.options import Tolerance
from fedge.converters.parity import ParityReport, unverified

STOCHASTIC_LAYERS = (
    "Dropout",
    "SpatialDropout",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
)
TRAIN_TOLERANCE = Tolerance(max_abs_err=1e-5)


def check_train_step(
    model: Any,
    bundle_dir: Path,
    record: Mapping[str, Any],
    inputs: Sequence[npt.NDArray[Any]],
    learning_rate: float = 0.05,
    batch: int = 32,
) -> ParityReport:
    stochastic = [
        layer.name
        for layer in model.layers
        if any(type(layer).__name__.startswith(s) for s in STOCHASTIC_LAYERS)
    ]
    if stochastic:
        return unverified(
            TRAIN_TOLERANCE, "fp32", f"stochastic layers {stochastic} make one training step random"
        )
    import tensorflow as tf

    xs = [np.asarray(x[:batch]) for x in inputs]
    keras_in = xs if len(xs) > 1 else xs[0]
    outputs = model.predict(keras_in, verbose=0)
    if record["loss"] == "sparse_categorical_crossentropy":
        labels: npt.NDArray[Any] = outputs.argmax(axis=1).astype(np.int32)
        labels = np.roll(labels, 1)  # disagree with the model a little: a non-zero gradient
    else:
        labels = (outputs + 0.1).astype(np.float32)

    reference = tf.keras.models.clone_model(model)
    reference.set_weights(model.get_weights())
    reference.compile(optimizer=tf.keras.optimizers.SGD(learning_rate), loss=record["loss"])
    reference.train_on_batch(keras_in, labels)
    expected = reference.get_weights()

    interpreter = tf.lite.Interpreter(model_path=str(bundle_dir / record["path"]))
    keys = record["weight_keys"]
    interpreter.get_signature_runner("set_weights")(
        **{k: w for k, w in zip(keys, model.get_weights(), strict=True)}
    )
    feed = dict(zip([name for name, _, _ in input_specs(model)], xs, strict=True))
    interpreter.get_signature_runner("train")(
        **feed, label=labels, learning_rate=np.float32(learning_rate)
    )
    got = interpreter.get_signature_runner("get_weights")()
    err = max(float(np.max(np.abs(got[k] - w))) for k, w in zip(keys, expected, strict=True))
    ok = err <= (TRAIN_TOLERANCE.max_abs_err or 0.0)
    return ParityReport(
        status="pass" if ok else "fail",
        samples=len(xs[0]),
        max_abs_err=err,
        top1_agreement=None,
        tolerance=TRAIN_TOLERANCE,
        precision="fp32",
        reason=(
            f"weights after one SGD step differ from Keras by at most {err:.3g}"
            if ok
            else f"weights after one SGD step differ from Keras by {err:.3g} > 1e-05"
        ),
    )
