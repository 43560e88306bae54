"""Where the first global checkpoint comes from, without TensorFlow where it can.

Only a new data directory comes here; a restart reads its model from the
database. ``--model`` may be

* a bundle directory: its files are checked against the manifest's
  hashes, the weight spec is the manifest's and the weights come from its
  ``weights.safetensors`` (NumPy only, see :mod:`fedge.bundle.weights`).
  A bundle written before fedge put the weights in bundles has only its
  Keras model, which is loaded with TensorFlow;
* a ``.keras`` / ``.h5`` file: loaded with TensorFlow (seconds to import);
* nothing: the reference digits CNN's initial weights for ``seed``. For
  the default seed they ship with fedge (no TensorFlow); any other seed
  (``FEDGE_SEED``, ``seed`` in the config file) builds the model with
  TensorFlow, the same initial weights as ``fedge train --seed`` (see
  :mod:`fedge.reference.weights`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from fedge.bundle.manifest import MANIFEST_FILE, ManifestError, verify_bundle
from fedge.bundle.weights import read_weights
from fedge.reference.weights import REFERENCE_MODEL_NAME, initial_weights
from fedge.server.errors import ConfigurationError
from fedge.wire.update_codec import Weights
from fedge.wire.weight_spec import ModelSpec

log = logging.getLogger("fedge.server")


def load_initial_weights(model: Path | None, seed: int) -> tuple[str, ModelSpec, Weights]:
    """(model name, canonical weight specs, weights in canonical order)."""
    if model is None:
        weights = initial_weights(seed)
        return REFERENCE_MODEL_NAME, ModelSpec.of_weights(weights), weights
    if model.is_dir() and (model / MANIFEST_FILE).is_file():
        return _from_bundle(model)
    return _from_keras_file(model, model)


def _from_bundle(bundle: Path) -> tuple[str, ModelSpec, Weights]:
    try:
        manifest = verify_bundle(bundle)
        weights = read_weights(bundle, manifest)
    except ManifestError as exc:
        raise ConfigurationError(f"cannot use bundle {bundle}: {exc}") from exc
    if weights is None:
        keras = manifest.artifacts.get("keras")
        if keras is None:
            raise ConfigurationError(f"bundle {bundle} has neither weights nor a Keras model")
        log.warning("bundle %s has no weights file; loading its Keras model", bundle)
        return _from_keras_file(bundle / keras["entry"], bundle)
    return manifest.name, manifest.weights, as_specified(manifest.weights, weights)


def _from_keras_file(path: Path, given: Path) -> tuple[str, ModelSpec, Weights]:
    """A Keras model file: the one source that needs TensorFlow."""
    if not path.exists():
        raise ConfigurationError(f"model not found: {given}")
    keras_model = _load_keras(path, given)
    spec = ModelSpec.from_keras(keras_model)
    named = spec.named(keras_model.get_weights())
    return str(keras_model.name), spec, as_specified(spec, named)


def as_specified(spec: ModelSpec, weights: Weights) -> Weights:
    """Float weights as float32 (what devices train and send), every other
    weight as the spec says: a Normalization layer's int64 ``count`` stays
    int64, or the server would refuse its own first checkpoint."""
    return {
        weight.name: np.asarray(
            weights[weight.name], dtype=np.float32 if weight.is_float else weight.dtype
        )
        for weight in spec
    }


def _load_keras(path: Path, given: Path) -> Any:
    import tensorflow as tf

    try:
        return tf.keras.models.load_model(path, compile=False)
    except Exception as exc:
        raise ConfigurationError(f"cannot load model {given}: {exc}") from exc
