"""The reference model: a small Keras 2 CNN for 8x8x1 digits, 10 classes.

Layer names are fixed because they become the canonical weight names that
the bundle manifest, every runtime and the update codec share (see
:meth:`fedge.wire.weight_spec.ModelSpec.from_keras`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fedge.reference.data import IMAGE_SHAPE, NUM_CLASSES

if TYPE_CHECKING:
    import tensorflow as tf

INPUT_NAME = "image"
OUTPUT_NAME = "probs"


def build_reference_model(*, smooth: bool = False) -> tf.keras.Model:
    """The digits CNN (about 40k parameters), uncompiled.

    Call ``tf.keras.utils.set_random_seed`` first for reproducible weights.

    ``smooth=True`` builds its smooth twin, for comparing two training
    engines, never for the product: the same layers, weight names, shapes
    and initial values, with GELU instead of ReLU and average instead of max
    pooling. The product's ReLU and max-pool make the SGD step
    discontinuous (a pre-activation at the ReLU kink, two near-equal values
    in a pool window): two float32 engines that agree to rounding route a
    gradient differently when a value lands within one rounding of such a
    point, and the difference grows from 1e-7 to 1e-2 within a few rounds.
    The smooth twin's step is continuous, so rounding stays rounding.
    """
    import tensorflow as tf

    layers = tf.keras.layers
    activation = "gelu" if smooth else "relu"
    pooling = layers.AveragePooling2D if smooth else layers.MaxPooling2D
    inputs = tf.keras.Input(shape=IMAGE_SHAPE, name=INPUT_NAME)
    x = layers.Conv2D(16, 3, padding="same", activation=activation, name="conv1")(inputs)
    x = layers.Conv2D(32, 3, padding="same", activation=activation, name="conv2")(x)
    x = pooling(2, name="pool")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(64, activation=activation, name="dense")(x)
    outputs = layers.Dense(NUM_CLASSES, activation="softmax", name=OUTPUT_NAME)(x)
    return tf.keras.Model(inputs, outputs, name="digits_cnn_smooth" if smooth else "digits_cnn")
