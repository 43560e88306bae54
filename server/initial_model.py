"""Where the first global checkpoint comes from.

``--model`` may be a bundle directory (its Keras artifact), a .keras/.h5
file, or nothing: then the reference digits CNN, freshly initialised from
the seed, so ``fedge serve`` runs with no other input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fedge.manifest import MANIFEST_FILE, TensorSpec, verify_bundle
from fedge.model import canonical_weights
from fedge.server.errors import ConfigurationError
from fedge.update_codec import Weights


def load_initial_weights(model: Path | None, seed: int) -> tuple[str, list[TensorSpec], Weights]:
    """(model name, canonical weight specs, weights in canonical order)."""
    keras_model = _load(model, seed)
    specs = [TensorSpec(w.name, w.shape, w.dtype) for w in canonical_weights(keras_model)]
    values = keras_model.get_weights()
    weights = {s.name: np.asarray(v, dtype=np.float32) for s, v in zip(specs, values, strict=True)}
    return str(keras_model.name), specs, weights


def _load(model: Path | None, seed: int) -> Any:
    import tensorflow as tf

    if model is None:
        from fedge.model import build_reference_model

        tf.keras.utils.set_random_seed(seed)
        return build_reference_model()
    path = model
    if model.is_dir() and (model / MANIFEST_FILE).is_file():
        manifest = verify_bundle(model)
        path = model / manifest.artifact("keras")["entry"]
    if not path.exists():
        raise ConfigurationError(f"model not found: {model}")
    try:
        return tf.keras.models.load_model(path, compile=False)
    except Exception as exc:
        raise ConfigurationError(f"cannot load model {model}: {exc}") from exc
