"""Custom Keras layers as users write them, for ``--custom-objects`` tests.

``Scale`` registers itself with Keras when this module is imported (what
``--custom-objects tests.converters.custom_layers`` does); ``Offset`` does
not, so a model that has one loads only when it is named
(``--custom-objects tests.converters.custom_layers:Offset``).
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

REGISTERED_PACKAGE = "fedge_tests"


@tf.keras.utils.register_keras_serializable(package=REGISTERED_PACKAGE)
class Scale(tf.keras.layers.Layer):  # type: ignore[misc]
    """``x * w * factor``: one trainable weight per feature, a constant factor."""

    def __init__(self, factor: float = 2.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.factor = factor

    def build(self, input_shape: Any) -> None:
        self.w = self.add_weight(name="w", shape=(int(input_shape[-1]),), initializer="ones")

    def call(self, inputs: Any) -> Any:
        return inputs * self.w * self.factor

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": self.factor}


class Offset(tf.keras.layers.Layer):  # type: ignore[misc]
    """``x + shift``, not registered with Keras."""

    def __init__(self, shift: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.shift = shift

    def call(self, inputs: Any) -> Any:
        return inputs + self.shift

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "shift": self.shift}


@tf.keras.utils.register_keras_serializable(package=REGISTERED_PACKAGE)
class HalfL2(tf.keras.regularizers.Regularizer):  # type: ignore[misc]
    """``0.5 * sum(w**2)``: a custom regularizer, registered like ``Scale``.

    Keras saves a registered class without its module, so loading it where
    it is not registered is "Cannot deserialize object of type `HalfL2`".
    """

    def __call__(self, weights: Any) -> Any:
        return 0.5 * tf.reduce_sum(weights * weights)

    def get_config(self) -> dict[str, Any]:
        return {}
