"""Small Keras 2 models of different architectures, for converter tests.

Each builder seeds TensorFlow so the weights are the same on every run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf

from fedge.reference.model import build_reference_model

layers = tf.keras.layers


def reference_cnn() -> Any:
    tf.keras.utils.set_random_seed(0)
    return build_reference_model()


def two_input_functional() -> Any:
    """An image branch and a tabular branch, concatenated."""
    tf.keras.utils.set_random_seed(1)
    image = tf.keras.Input(shape=(8, 8, 1), name="image")
    extra = tf.keras.Input(shape=(4,), name="extra")
    x = layers.Conv2D(8, 3, activation="relu", name="conv")(image)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    y = layers.Dense(8, activation="tanh", name="extra_dense")(extra)
    z = layers.Concatenate(name="concat")([x, y])
    z = layers.Dropout(0.2, name="dropout")(z)
    out = layers.Dense(3, activation="softmax", name="probs")(z)
    return tf.keras.Model([image, extra], out, name="two_inputs")


def separable_bn_cnn() -> Any:
    """Depthwise / separable convolutions with batch normalisation and ReLU6."""
    tf.keras.utils.set_random_seed(2)
    model = tf.keras.Sequential(
        [
            tf.keras.Input(shape=(16, 16, 3), name="image"),
            layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="stem"),
            layers.BatchNormalization(name="stem_bn"),
            layers.ReLU(max_value=6.0, name="stem_relu6"),
            layers.DepthwiseConv2D(3, padding="same", name="dw"),
            layers.BatchNormalization(name="dw_bn"),
            layers.Activation(tf.nn.relu6, name="dw_relu6"),
            layers.SeparableConv2D(16, 3, padding="same", activation="relu", name="sep"),
            layers.AveragePooling2D(2, name="avgpool"),
            layers.Flatten(name="flatten"),
            layers.Dense(5, activation="softmax", name="probs"),
        ],
        name="separable_bn",
    )
    _randomise_batchnorm(model)
    return model


def gru_classifier() -> Any:
    """A recurrent classifier over sequences of 10 steps x 6 features."""
    tf.keras.utils.set_random_seed(3)
    return tf.keras.Sequential(
        [
            tf.keras.Input(shape=(10, 6), name="sequence"),
            layers.GRU(12, name="gru"),
            layers.Dense(4, activation="softmax", name="probs"),
        ],
        name="gru",
    )


def lstm_classifier() -> Any:
    tf.keras.utils.set_random_seed(4)
    return tf.keras.Sequential(
        [
            tf.keras.Input(shape=(10, 6), name="sequence"),
            layers.LSTM(12, name="lstm"),
            layers.Dense(4, activation="softmax", name="probs"),
        ],
        name="lstm",
    )


def _randomise_batchnorm(model: Any) -> None:
    """Give BN layers non-trivial statistics, as a trained model would have."""
    rng = tf.random.Generator.from_seed(5)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            gamma, beta, mean, var = layer.weights
            gamma.assign(rng.uniform(gamma.shape, 0.5, 1.5))
            beta.assign(rng.uniform(beta.shape, -0.2, 0.2))
            mean.assign(rng.uniform(mean.shape, -0.2, 0.2))
            var.assign(rng.uniform(var.shape, 0.5, 2.0))


ZOO: dict[str, Callable[[], Any]] = {
    "reference_cnn": reference_cnn,
    "two_input_functional": two_input_functional,
    "separable_bn_cnn": separable_bn_cnn,
    "gru_classifier": gru_classifier,
    "lstm_classifier": lstm_classifier,
}
