"""What both TF.js writers share: the tensorflowjs converter, imported safely,
and the weight quantization choices.

The layers writer (:mod:`fedge.converters.targets.tfjs`) falls back to the
graph writer (:mod:`fedge.converters.targets.tfjs_graph`); keeping these here
lets the graph writer use them without importing the layers writer back.
"""

from __future__ import annotations

import importlib
from typing import Any

# ``--tfjs-quantize`` choice -> tensorflowjs's ``quantization_dtype_map``.
QUANTIZATION_MAPS: dict[str, dict[str, bool] | None] = {
    "none": None,
    "float16": {"float16": True},
    "uint8": {"uint8": True},
}
_KERAS_PREFIXES = ("keras.", "compat.v1.keras.")


def import_tensorflowjs(module: str) -> Any:
    """A tensorflowjs converter module, imported without breaking Keras.

    tensorflowjs imports tf_keras, whose ``keras_export`` re-points every
    public Keras 2 name in TensorFlow's shared name table ("keras.layers.Conv2D",
    ...) at tf_keras's classes. Keras's .keras loader looks classes up in that
    table, so afterwards ``tf.keras.models.load_model`` builds tf_keras layers
    and loops forever. The table's Keras entries are put back after the import.
    """
    import tensorflow as tf
    from tensorflow.python.util import tf_export

    tf.keras.layers.Layer  # noqa: B018 - make sure Keras has registered its names
    table = tf_export._NAME_TO_SYMBOL_MAPPING
    keras_names = {k: v for k, v in table.items() if k.startswith(_KERAS_PREFIXES)}
    imported = importlib.import_module(module)
    table.update(keras_names)
    return imported
