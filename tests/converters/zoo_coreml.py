"""Models users bring to the Core ML target, beyond :mod:`tests.model_zoo`.

Each stresses one thing the Core ML path got wrong: a regressor (no top-1
to judge fp16 by), a bidirectional GRU whose cells split with ``-1``
(``reset_after=False``), swish/silu activations, ``tf.ones_like`` (a
Transformer's mask; coremltools has no ``OnesLike`` conversion), MobileNetV2's
block (ReLU6, depthwise convolution, batch normalisation, residual add), and
the whole of Keras's MobileNetV2 (not in ``ZOO``: untrained, it is too
sensitive for fp16, see its test). Each builder seeds TensorFlow, so the
weights are the same on every run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

layers = tf.keras.layers


def regressor() -> Any:
    """Six features to one value of order 10 (neither a probability nor in [0, 1])."""
    tf.keras.utils.set_random_seed(10)
    model = tf.keras.Sequential(
        [
            tf.keras.Input(shape=(6,), name="features"),
            layers.Dense(32, activation="relu", name="hidden"),
            layers.Dense(16, activation="tanh", name="hidden2"),
            layers.Dense(1, name="price"),
        ],
        name="regressor",
    )
    weights, bias = model.get_layer("price").get_weights()
    model.get_layer("price").set_weights([weights * 10.0, bias + 20.0])
    return model


def bidirectional_gru() -> Any:
    """Two stacked bidirectional GRUs: the first with ``reset_after=False``
    (Keras 1's GRU, and what ``tf.split(..., [n, n, -1])`` comes from), the
    second with Keras 2's default (the fused kernel)."""
    tf.keras.utils.set_random_seed(11)
    return tf.keras.Sequential(
        [
            tf.keras.Input(shape=(10, 6), name="sequence"),
            layers.Bidirectional(
                layers.GRU(8, reset_after=False, return_sequences=True), name="bigru_v1"
            ),
            layers.Bidirectional(layers.GRU(8), name="bigru"),
            layers.Dense(4, activation="softmax", name="probs"),
        ],
        name="bigru",
    )


def swish_mlp() -> Any:
    """Dense and convolution layers with swish (silu) activations."""
    tf.keras.utils.set_random_seed(12)
    return tf.keras.Sequential(
        [
            tf.keras.Input(shape=(8, 8, 1), name="image"),
            layers.Conv2D(4, 3, activation="swish", name="conv"),
            layers.Flatten(name="flatten"),
            layers.Dense(16, name="dense"),
            layers.Activation("silu", name="silu"),
            layers.Dense(3, activation="softmax", name="probs"),
        ],
        name="swish",
    )


def ones_like_mask() -> Any:
    """A Transformer's trick: a tensor of ones shaped like the activations
    (``tf.ones_like``, TensorFlow's ``OnesLike`` op), here a key mask that
    lets every position attend, then a learned offset."""
    tf.keras.utils.set_random_seed(15)
    sequence = tf.keras.Input(shape=(5, 4), name="sequence")
    hidden = layers.Dense(8, activation="tanh", name="embed")(sequence)
    keep = tf.ones_like(hidden[..., 0])  # (batch, positions): every position is real
    mask = keep[:, None, :] * keep[:, :, None]
    attended = layers.MultiHeadAttention(2, 4, name="attention")(
        hidden, hidden, attention_mask=mask
    )
    shifted = attended + 0.25 * tf.ones_like(attended)
    pooled = layers.GlobalAveragePooling1D(name="pool")(shifted)
    probs = layers.Dense(3, activation="softmax", name="probs")(pooled)
    return tf.keras.Model(sequence, probs, name="ones_like_mask")


def mobilenet_block() -> Any:
    """MobileNetV2's inverted residual block (1x1 expand, padded 3x3
    depthwise, 1x1 project, residual add) between a stem and a classifier."""
    tf.keras.utils.set_random_seed(13)
    image = tf.keras.Input(shape=(16, 16, 3), name="image")
    x = layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="stem")(image)
    x = layers.BatchNormalization(name="stem_bn")(x)
    stem = layers.ReLU(6.0, name="stem_relu6")(x)
    x = layers.Conv2D(24, 1, use_bias=False, name="expand")(stem)
    x = layers.BatchNormalization(name="expand_bn")(x)
    x = layers.ReLU(6.0, name="expand_relu6")(x)
    x = layers.ZeroPadding2D(1, name="pad")(x)  # then a "valid" 3x3: the size is kept
    x = layers.DepthwiseConv2D(3, use_bias=False, name="depthwise")(x)
    x = layers.BatchNormalization(name="depthwise_bn")(x)
    x = layers.ReLU(6.0, name="depthwise_relu6")(x)
    x = layers.Conv2D(8, 1, use_bias=False, name="project")(x)
    x = layers.BatchNormalization(name="project_bn")(x)
    x = layers.Add(name="add")([stem, x])
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    probs = layers.Dense(5, activation="softmax", name="probs")(x)
    return _with_batch_statistics(tf.keras.Model(image, probs, name="mobilenet_block"))


def mobilenet_v2() -> Any:
    """Keras's MobileNetV2 at width 0.35 on 32x32 images, random weights."""
    tf.keras.utils.set_random_seed(13)
    model = tf.keras.applications.MobileNetV2(
        weights=None, input_shape=(32, 32, 3), alpha=0.35, classes=10
    )
    return _with_batch_statistics(model)


def _with_batch_statistics(model: Any) -> Any:
    """Batch-norm statistics from one batch of inputs, as training sets them.

    With the defaults (mean 0, variance 1) the activations of an untrained
    MobileNetV2 shrink to nothing by its last block, and every input gets
    the same output, which no parity check can tell from a constant.
    """
    norms = [layer for layer in model.layers if isinstance(layer, layers.BatchNormalization)]
    for norm in norms:
        norm.momentum = 0.0  # the moving statistics become this batch's
    shape = (64, *model.inputs[0].shape[1:])
    model(np.random.default_rng(14).uniform(0, 1, shape).astype(np.float32), training=True)
    for norm in norms:
        norm.momentum = 0.99
    return model


ZOO: dict[str, Callable[[], Any]] = {
    "regressor": regressor,
    "bidirectional_gru": bidirectional_gru,
    "swish_mlp": swish_mlp,
    "mobilenet_block": mobilenet_block,
    "ones_like_mask": ones_like_mask,
}
