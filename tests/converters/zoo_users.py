"""Small models of the kinds users bring, for the honest-conversion tests.

Unlike :mod:`tests.model_zoo` (architectures), these differ in what the
converter must not get wrong: inputs in 0..255 rather than 0..1, a logits
head compiled with its own loss, outputs that never vary, two outputs,
integer inputs, a regularised kernel, a constrained kernel. Each builder
seeds TensorFlow, so the weights are the same on every run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import tensorflow as tf

from fedge.reference.data import load_digits_images

layers = tf.keras.layers


def pixel_images() -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """The 1,797 8x8 digits as a camera would give them: whole pixels in 0..255."""
    x, y = load_digits_images()
    return np.round(x * 255.0).astype(np.float32), y


def pixel_classifier() -> Any:
    """A digits classifier that takes 0..255 pixels and rescales them itself,
    trained for 3 epochs (about 0.9 accuracy on the last 597 images)."""
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential(
        [
            tf.keras.Input((8, 8, 1), name="pixels"),
            layers.Rescaling(1 / 255, name="scale"),
            layers.Conv2D(8, 3, activation="relu", name="conv"),
            layers.Flatten(name="flatten"),
            layers.Dense(10, activation="softmax", name="probs"),
        ],
        name="pixel_cnn",
    )
    x, y = pixel_images()
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    model.fit(x[:1200], y[:1200], epochs=3, batch_size=64, verbose=0)
    return model


def logits_classifier(learning_rate: float = 0.1) -> Any:
    """Three classes as logits (no softmax), compiled with the loss that says so."""
    tf.keras.utils.set_random_seed(1)
    model = tf.keras.Sequential(
        [
            tf.keras.Input((6,), name="features"),
            layers.Dense(8, activation="tanh", name="hidden"),
            layers.Dense(3, name="logits"),
        ],
        name="logits_mlp",
    )
    model.compile(
        optimizer=tf.keras.optimizers.SGD(learning_rate),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def constant_classifier() -> Any:
    """Outputs that never depend on the input: a zero kernel, so softmax(bias)."""
    tf.keras.utils.set_random_seed(2)
    return tf.keras.Sequential(
        [
            tf.keras.Input((5,), name="features"),
            layers.Dense(
                4,
                activation="softmax",
                kernel_initializer="zeros",
                bias_initializer=tf.keras.initializers.Constant([0.1, 0.4, -0.2, 0.0]),
                name="probs",
            ),
        ],
        name="constant_head",
    )


def two_output_model() -> Any:
    """A class and a value from one trunk."""
    tf.keras.utils.set_random_seed(3)
    inputs = tf.keras.Input((5,), name="features")
    trunk = layers.Dense(8, activation="relu", name="trunk")(inputs)
    kind = layers.Dense(3, activation="softmax", name="kind")(trunk)
    value = layers.Dense(1, name="value")(trunk)
    return tf.keras.Model(inputs, [kind, value], name="two_heads")


def token_classifier() -> Any:
    """Integer token ids in, two classes out: inputs that must stay integers."""
    tf.keras.utils.set_random_seed(5)
    return tf.keras.Sequential(
        [
            tf.keras.Input((4,), dtype="int32", name="tokens"),
            layers.Embedding(10, 3, name="embed"),
            layers.Flatten(name="flatten"),
            layers.Dense(2, activation="softmax", name="probs"),
        ],
        name="tokens",
    )


def regularized_classifier() -> Any:
    """L2 on the kernel: Keras's training loss includes the penalty."""
    tf.keras.utils.set_random_seed(6)
    model = tf.keras.Sequential(
        [
            tf.keras.Input((6,), name="features"),
            layers.Dense(
                3,
                activation="softmax",
                kernel_regularizer=tf.keras.regularizers.L2(0.5),
                name="probs",
            ),
        ],
        name="regularized",
    )
    model.compile(optimizer=tf.keras.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy")
    return model


def constrained_classifier() -> Any:
    """A non-negative kernel (``NonNeg``), small at first: Keras projects the
    weights back after each step; train.tflite's plain SGD step does not, so
    the two steps differ and the training artifact must fail its check."""
    tf.keras.utils.set_random_seed(4)
    return tf.keras.Sequential(
        [
            tf.keras.Input((6,), name="features"),
            layers.Dense(
                3,
                activation="softmax",
                kernel_initializer=tf.keras.initializers.RandomUniform(0.0, 0.01),
                kernel_constraint=tf.keras.constraints.NonNeg(),
                name="probs",
            ),
        ],
        name="constrained",
    )


def save(model: Any, folder: Path) -> Path:
    path = folder / f"{model.name}.keras"
    model.save(path)
    return path
