"""The model kinds of the whole-loop benchmark, each with its own synthetic
per-device data (:mod:`bench.model_kinds_bench`).

Every builder makes a small compiled Keras model (compiled: the TFLite
training artifact takes the compiled loss and optimizer); every data
function draws examples whose label the model can learn, with a style
that differs per device (a brightness, a gain, a vocabulary, a shift), so
that federated averaging and personalisation have something to do. Sizes
are small on purpose: the whole table runs on a 2-core CPU in minutes.

Benchmark code, not part of the installed package; tests/ has its own zoos.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Arrays = dict[str, npt.NDArray[Any]]
Rng = np.random.Generator


@dataclass(frozen=True)
class Kind:
    """One model kind: ``build(data)`` returns the compiled Keras model (it
    may adapt a layer on ``data``); ``data(rng, devices, per_device)`` the
    arrays of an ``.npz`` for ``fedge simulate --data`` (inputs by name,
    ``y``, ``device``); ``suffix`` the file the model is saved as."""

    key: str
    name: str
    build: Callable[[Arrays], Any]
    data: Callable[[Rng, int, int], Arrays]
    suffix: str = ".keras"
    slow: bool = False  # large for this bench: --quick trains it less


def _devices(devices: int, per_device: int) -> npt.NDArray[np.str_]:
    return np.repeat([f"d{i}" for i in range(devices)], per_device)


def _compile(
    model: Any, loss: str = "sparse_categorical_crossentropy", optimizer: Any = None
) -> Any:
    import tensorflow as tf

    metrics = ["accuracy"] if "categorical" in loss else ["mae"]
    model.compile(optimizer=optimizer or tf.keras.optimizers.SGD(0.05), loss=loss, metrics=metrics)
    return model


# A small Transformer text classifier over token ids: the class is which
# vocabulary block its keywords come from; each device has its own filler words.
VOCAB, SEQ = 64, 16


def transformer(_: Arrays) -> Any:
    from tensorflow import keras

    layers = keras.layers
    tokens = keras.Input((SEQ,), dtype="int32", name="tokens")
    h = layers.Embedding(VOCAB, 16, name="embed")(tokens)
    attended = layers.MultiHeadAttention(num_heads=2, key_dim=8, name="attention")(h, h)
    h = layers.LayerNormalization(name="norm1")(layers.Add()([h, attended]))
    ff = layers.Dense(16, name="ff_out")(layers.Dense(32, activation="relu", name="ff_in")(h))
    h = layers.LayerNormalization(name="norm2")(layers.Add()([h, ff]))
    h = layers.GlobalAveragePooling1D()(h)
    out = layers.Dense(3, activation="softmax", name="classes")(h)
    return _compile(keras.Model(tokens, out, name="text_transformer"))


def transformer_data(rng: Rng, devices: int, per_device: int) -> Arrays:
    n = devices * per_device
    y = rng.integers(0, 3, n)
    device = np.repeat(np.arange(devices), per_device)
    filler_start = 30 + (device * 7) % 26
    tokens = filler_start[:, None] + rng.integers(0, 8, (n, SEQ))
    keywords = rng.random((n, SEQ)) < 0.3
    tokens = np.where(keywords, y[:, None] * 10 + rng.integers(0, 10, (n, SEQ)), tokens)
    return {"tokens": tokens.astype(np.int32), "y": y, "device": _devices(devices, per_device)}


# A keyword spotter: Conv1D over 40 frames of 8 features, BatchNorm and
# Dropout; a keyword is a tone in its own band; devices differ in gain and noise.
FRAMES, BANDS = 40, 8


def keyword_spotter(_: Arrays) -> Any:
    from tensorflow import keras

    layers = keras.layers
    frames = keras.Input((FRAMES, BANDS), name="frames")
    h = layers.Conv1D(16, 5, padding="same", use_bias=False, name="conv1")(frames)
    h = layers.Dropout(0.2)(layers.ReLU()(layers.BatchNormalization(name="bn1")(h)))
    h = layers.Conv1D(16, 3, padding="same", use_bias=False, name="conv2")(h)
    h = layers.ReLU()(layers.BatchNormalization(name="bn2")(h))
    h = layers.GlobalAveragePooling1D()(h)
    out = layers.Dense(4, activation="softmax", name="keywords")(layers.Dropout(0.2)(h))
    return _compile(keras.Model(frames, out, name="keyword_spotter"))


def keyword_data(rng: Rng, devices: int, per_device: int) -> Arrays:
    n = devices * per_device
    y = rng.integers(0, 4, n)
    device = np.repeat(np.arange(devices), per_device)
    t = np.arange(FRAMES)[None, :]
    tone = np.sin(2 * np.pi * (y[:, None] + 1) * t / FRAMES)
    x = rng.normal(0, 0.3 + 0.1 * (device % 3)[:, None, None], (n, FRAMES, BANDS))
    band = 2 * y
    for offset in (0, 1):
        x[np.arange(n), :, band + offset] += tone
    x *= (0.5 + 0.4 * (device % 4))[:, None, None]
    return {"frames": x.astype(np.float32), "y": y, "device": _devices(devices, per_device)}


# Images: bars (horizontal, vertical, diagonal), each device with its own
# brightness and contrast (the per-device styles FedBN is for).
SIDE = 16


def _bars(rng: Rng, y: npt.NDArray[Any], side: int, channels: int) -> npt.NDArray[np.float32]:
    n = len(y)
    images = rng.normal(0, 0.2, (n, side, side, channels))
    where = rng.integers(2, side - 2, n)
    for i in range(n):
        if y[i] == 0:
            images[i, where[i] - 1 : where[i] + 1, :, :] += 1.0
        elif y[i] == 1:
            images[i, :, where[i] - 1 : where[i] + 1, :] += 1.0
        else:
            diagonal = np.eye(side, k=int(where[i]) - side // 2)
            images[i] += diagonal[:, :, None]
    return images.astype(np.float32)


def _styled(images: npt.NDArray[Any], device: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    contrast = (0.6 + 0.3 * (device % 4)).reshape(-1, 1, 1, 1)
    brightness = (-0.5 + 0.35 * (device % 3)).reshape(-1, 1, 1, 1)
    styled: npt.NDArray[np.float32] = (images * contrast + brightness).astype(np.float32)
    return styled


def bn_cnn(_: Arrays) -> Any:
    from tensorflow import keras

    layers = keras.layers
    image = keras.Input((SIDE, SIDE, 1), name="image")
    h = layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv1")(image)
    h = layers.MaxPooling2D()(layers.ReLU()(layers.BatchNormalization(name="bn1")(h)))
    h = layers.Conv2D(16, 3, padding="same", use_bias=False, name="conv2")(h)
    h = layers.ReLU()(layers.BatchNormalization(name="bn2")(h))
    out = layers.Dense(3, activation="softmax", name="classes")(layers.GlobalAveragePooling2D()(h))
    return _compile(keras.Model(image, out, name="bn_cnn"))


def styled_images(rng: Rng, devices: int, per_device: int) -> Arrays:
    y = rng.integers(0, 3, devices * per_device)
    device = np.repeat(np.arange(devices), per_device)
    x = _styled(_bars(rng, y, SIDE, 1), device)
    return {"image": x, "y": y, "device": _devices(devices, per_device)}


def autoencoder(_: Arrays) -> Any:
    from tensorflow import keras

    layers = keras.layers
    image = keras.Input((SIDE, SIDE, 1), name="image")
    h = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="down1")(image)
    h = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="down2")(h)
    h = layers.Conv2DTranspose(8, 3, strides=2, padding="same", activation="relu", name="up1")(h)
    out = layers.Conv2DTranspose(1, 3, strides=2, padding="same", name="up2")(h)
    return _compile(keras.Model(image, out, name="autoencoder"), loss="mean_squared_error")


def autoencoder_data(rng: Rng, devices: int, per_device: int) -> Arrays:
    y = rng.integers(0, 3, devices * per_device)
    device = np.repeat(np.arange(devices), per_device)
    x = _styled(_bars(rng, y, SIDE, 1), device)
    return {"image": x, "y": x.copy(), "device": _devices(devices, per_device)}


# keras.applications at a small input, weights=None; images of 0..255
# pixels (the applications rescale them), colour bars, per-device brightness.
APP_SIDE = 32


def _quick_batch_norm(model: Any) -> Any:
    """BatchNorm momentum 0.9: the applications' 0.99 and 0.999 are for
    ImageNet-length training. After the tens of steps this bench trains,
    their moving statistics would still be the initial ones, and the
    model's inference output constant (parity would be unverified: any
    constant agrees)."""
    from tensorflow import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    return model


def mobilenet_v3_small(_: Arrays) -> Any:
    from tensorflow import keras

    model = keras.applications.MobileNetV3Small(
        input_shape=(APP_SIDE, APP_SIDE, 3), weights=None, classes=3, minimalistic=False
    )
    return _compile(_quick_batch_norm(model))


def efficientnet_b0(_: Arrays) -> Any:
    from tensorflow import keras

    model = keras.applications.EfficientNetB0(
        input_shape=(APP_SIDE, APP_SIDE, 3), weights=None, classes=3
    )
    return _compile(_quick_batch_norm(model))


def pixel_images(rng: Rng, devices: int, per_device: int) -> Arrays:
    y = rng.integers(0, 3, devices * per_device)
    device = np.repeat(np.arange(devices), per_device)
    bars = _bars(rng, y, APP_SIDE, 3)
    pixels = np.clip(_styled(bars, device) * 100 + 120, 0, 255).astype(np.float32)
    return {"x": pixels, "y": y, "device": _devices(devices, per_device)}


def image_and_table(_: Arrays) -> Any:
    from tensorflow import keras

    layers = keras.layers
    image = keras.Input((8, 8, 1), name="image")
    table = keras.Input((5,), name="table")
    seen = layers.Flatten()(layers.Conv2D(4, 3, activation="relu", name="conv")(image))
    read = layers.Dense(8, activation="relu", name="table_dense")(table)
    joined = layers.Concatenate()([seen, read])
    out = layers.Dense(3, activation="softmax", name="classes")(joined)
    return _compile(keras.Model([image, table], out, name="image_table"))


def image_table_data(rng: Rng, devices: int, per_device: int) -> Arrays:
    n = devices * per_device
    y = rng.integers(0, 3, n)
    device = np.repeat(np.arange(devices), per_device)
    bright = (y == 1).astype(np.float32)
    image = rng.normal(0, 0.3, (n, 8, 8, 1)) + bright[:, None, None, None]
    table = rng.normal(0, 1, (n, 5)) + 0.3 * (device % 3)[:, None]
    table[:, 0] += 2.0 * (y == 2)
    return {
        "image": image.astype(np.float32),
        "table": table.astype(np.float32),
        "y": y,
        "device": _devices(devices, per_device),
    }


# A regressor whose Normalization layer is adapted on the data it is built
# for: features of large scale and offset, each device shifted.
FEATURES = 6
_COEFFICIENTS = np.array([1.5, -2.0, 0.5, 1.0, 0.0, -0.7])


def regressor(data: Arrays) -> Any:
    from tensorflow import keras

    layers = keras.layers
    features = keras.Input((FEATURES,), name="features")
    norm = layers.Normalization(name="norm")
    norm.adapt(data["features"])
    h = layers.Dense(16, activation="relu", name="hidden")(norm(features))
    out = layers.Dense(1, name="value")(h)
    return _compile(keras.Model(features, out, name="regressor"), loss="mean_squared_error")


def regression_data(rng: Rng, devices: int, per_device: int) -> Arrays:
    n = devices * per_device
    device = np.repeat(np.arange(devices), per_device)
    z = rng.normal(0, 1, (n, FEATURES)) + 0.4 * (device % 3)[:, None]
    y = z @ _COEFFICIENTS + rng.normal(0, 0.1, n)
    features = z * 50 + 200  # raw units: what the Normalization layer is adapted to
    return {
        "features": features.astype(np.float32),
        "y": y.astype(np.float32)[:, None],
        "device": _devices(devices, per_device),
    }


def legacy_h5(_: Arrays) -> Any:
    from tensorflow import keras

    layers = keras.layers
    x = keras.Input((10,), name="x")
    h = layers.Dense(32, activation="relu", name="hidden")(x)
    out = layers.Dense(3, activation="softmax", name="classes")(h)
    return _compile(keras.Model(x, out, name="legacy_h5"), optimizer=keras.optimizers.Adam(1e-3))


def cluster_data(rng: Rng, devices: int, per_device: int) -> Arrays:
    n = devices * per_device
    y = rng.integers(0, 3, n)
    device = np.repeat(np.arange(devices), per_device)
    centres = rng.normal(0, 1.5, (3, 10))
    x = centres[y] + rng.normal(0, 1, (n, 10)) + 0.5 * (device % 4)[:, None]
    return {"x": x.astype(np.float32), "y": y, "device": _devices(devices, per_device)}


KINDS = (
    Kind("transformer", "Transformer text classifier (token ids)", transformer, transformer_data),
    Kind("kws", "Conv1D keyword spotter (BatchNorm, Dropout)", keyword_spotter, keyword_data),
    Kind("bn_cnn", "BatchNorm CNN, per-device image styles", bn_cnn, styled_images),
    Kind("autoencoder", "Conv2DTranspose autoencoder", autoencoder, autoencoder_data),
    Kind("mobilenetv3", "MobileNetV3Small (32x32, weights=None)", mobilenet_v3_small, pixel_images),
    Kind(
        "efficientnet",
        "EfficientNetB0 (32x32, weights=None)",
        efficientnet_b0,
        pixel_images,
        slow=True,
    ),
    Kind("two_input", "two inputs: image + tabular", image_and_table, image_table_data),
    Kind("regressor", "regressor, adapted Normalization", regressor, regression_data),
    Kind("legacy_h5", "legacy .h5 classifier (Adam)", legacy_h5, cluster_data, suffix=".h5"),
)
