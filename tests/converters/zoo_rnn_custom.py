"""Tiny models of the kinds issue 10 is about: recurrent layers, layers that
tfjs-layers lacks, dict outputs, a plain SavedModel, custom and Lambda layers.

Each builder seeds TensorFlow, so the weights are the same on every run;
each is small enough to convert to every target in a few seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tests.converters.custom_layers import Offset, Scale

layers = tf.keras.layers
STEPS, FEATURES = 5, 3


def lstm_classifier() -> Any:
    """An LSTM over 5 steps of 3 features: TFLite fuses it into a stateful kernel."""
    tf.keras.utils.set_random_seed(10)
    return tf.keras.Sequential(
        [
            tf.keras.Input((STEPS, FEATURES), name="sequence"),
            layers.LSTM(4, name="lstm"),
            layers.Dense(3, activation="softmax", name="probs"),
        ],
        name="tiny_lstm",
    )


def variable_length_lstm() -> Any:
    """An LSTM over sequences of any length: no unrolling possible."""
    tf.keras.utils.set_random_seed(11)
    return tf.keras.Sequential(
        [
            tf.keras.Input((None, FEATURES), name="sequence"),
            layers.LSTM(4, name="lstm"),
            layers.Dense(2, name="out"),
        ],
        name="varlen_lstm",
    )


def bidirectional_gru() -> Any:
    """``Bidirectional(GRU(reset_after=False))``: a layers model tfjs-layers can build."""
    tf.keras.utils.set_random_seed(12)
    return tf.keras.Sequential(
        [
            tf.keras.Input((STEPS, FEATURES), name="sequence"),
            layers.Bidirectional(layers.GRU(4, reset_after=False), name="bigru"),
            layers.Dense(3, activation="softmax", name="probs"),
        ],
        name="bi_gru",
    )


def gru_reset_after() -> Any:
    """Keras 2's default GRU (``reset_after=True``), which tfjs-layers lacks."""
    tf.keras.utils.set_random_seed(13)
    return tf.keras.Sequential(
        [
            tf.keras.Input((STEPS, FEATURES), name="sequence"),
            layers.GRU(4, name="gru"),
            layers.Dense(3, activation="softmax", name="probs"),
        ],
        name="gru_reset_after",
    )


def normalization_model() -> Any:
    """``Normalization`` adapted to data of mean 3 and deviation 2 (no tfjs-layers class),
    then a tanh Dense (which TensorFlow fuses into one op that TF.js lacks)."""
    tf.keras.utils.set_random_seed(14)
    norm = layers.Normalization(name="norm")
    norm.adapt(np.random.default_rng(14).normal(3.0, 2.0, size=(64, 4)).astype(np.float32))
    return tf.keras.Sequential(
        [tf.keras.Input((4,), name="features"), norm, layers.Dense(2, "tanh", name="out")],
        name="normalized",
    )


def dict_output_model() -> Any:
    """Two named outputs of the same shape. Keras orders them by key (probs,
    score); their layers sort the other way (head_a is score), so outputs
    matched by position or by layer name would be swapped."""
    tf.keras.utils.set_random_seed(15)
    features = tf.keras.Input((4,), name="features")
    hidden = layers.Dense(6, activation="relu", name="hidden")(features)
    outputs = {
        "score": layers.Dense(2, name="head_a")(hidden),
        "probs": layers.Dense(2, activation="softmax", name="head_b")(hidden),
    }
    return tf.keras.Model(features, outputs, name="dict_outputs")


class TwoInputAffine(tf.Module):  # type: ignore[misc]
    """Not Keras: a module whose serving signature takes ``x`` and ``bias``
    and returns ``y`` (3 values) and ``total`` (1 value)."""

    def __init__(self) -> None:
        super().__init__(name="two_input_affine")
        rng = np.random.default_rng(16)
        self.w = tf.Variable(rng.normal(size=(4, 3)).astype(np.float32), name="w")
        self.v = tf.Variable(rng.normal(size=(2, 3)).astype(np.float32), name="v")

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, 4], tf.float32, name="x"),
            tf.TensorSpec([None, 2], tf.float32, name="bias"),
        ]
    )
    def serve(self, x: Any, bias: Any) -> dict[str, Any]:
        y = tf.nn.tanh(tf.matmul(x, self.w) + tf.matmul(bias, self.v))
        return {"y": y, "total": tf.reduce_sum(x, axis=1, keepdims=True) - bias[:, :1]}


def save_plain_saved_model(folder: Path) -> Path:
    """Write :class:`TwoInputAffine` as a SavedModel with a ``serving_default``."""
    module = TwoInputAffine()
    path = folder / "affine_savedmodel"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def custom_layer_model() -> Any:
    """A registered custom layer (``Scale``) and an unregistered one (``Offset``)."""
    tf.keras.utils.set_random_seed(17)
    features = tf.keras.Input((4,), name="features")
    x = Scale(3.0, name="scale")(features)
    x = Offset(0.25, name="offset")(x)
    out = layers.Dense(2, name="out")(x)
    return tf.keras.Model(features, out, name="custom_layers")


def lambda_model() -> Any:
    """A ``Lambda`` layer with a Python lambda: its bytecode is saved in the file."""
    tf.keras.utils.set_random_seed(18)
    return tf.keras.Sequential(
        [
            tf.keras.Input((4,), name="features"),
            layers.Lambda(lambda t: t * 2.0 + 1.0, name="affine"),
            layers.Dense(2, name="out"),
        ],
        name="with_lambda",
    )


def save(model: Any, path: Path) -> Path:
    """Save as ``.keras`` or ``.h5`` (by the suffix), without Keras's HDF5 warning."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="You are saving your model as an HDF5 file")
        model.save(path)
    return path
