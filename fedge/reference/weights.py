"""The reference model's initial weights and weight spec, without TensorFlow.

``fedge serve`` with no ``--model`` federates the reference digits CNN
(:func:`fedge.reference.model.build_reference_model`) from its seeded initial
weights. Building the model needs TensorFlow, which takes seconds to
import; the server needs only the numbers. So the initial weights for the
default seed ship with the package (``weights.safetensors``, a
fedge checkpoint of about 160 KB) and are read with NumPy. A test rebuilds
them with TensorFlow and compares the bytes, so the file cannot go stale;
regenerate it with ``python -m fedge.reference.weights``.

Any other seed builds the model with TensorFlow, as ``fedge train --seed``
does: the same initial weights, a slower start.

The shipped file's header is also the reference model's weight spec: with
the model's name it tells the reference model (whose task is the digits)
apart from any other model that happens to take 8x8x1 inputs.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from pathlib import Path

import numpy as np

from fedge.wire.update_codec import Checkpoint, Weights, decode_checkpoint, encode_checkpoint
from fedge.wire.weight_spec import ModelSpec, WeightLike

REFERENCE_MODEL_NAME = "digits_cnn"
DEFAULT_SEED = 0
WEIGHTS_FILE = "weights.safetensors"


def shipped_weights() -> Weights:
    """The reference model's initial weights for :data:`DEFAULT_SEED`, in
    canonical order, from the file shipped with the package."""
    data = resources.files("fedge.reference").joinpath(WEIGHTS_FILE).read_bytes()
    return decode_checkpoint(data).weights


def initial_weights(seed: int = DEFAULT_SEED) -> Weights:
    """The reference model's initial weights for ``seed``: the shipped file
    for the default seed (NumPy only), TensorFlow for any other."""
    if seed == DEFAULT_SEED:
        return shipped_weights()
    return build_initial_weights(seed)


def build_initial_weights(seed: int) -> Weights:
    """Build the reference model with TensorFlow, seeded as ``fedge train``
    seeds it, and return its weights by canonical name."""
    import tensorflow as tf

    from fedge.reference.model import build_reference_model

    tf.keras.utils.set_random_seed(seed)
    model = build_reference_model()
    named = ModelSpec.from_keras(model).named(model.get_weights())
    return {name: np.asarray(value, dtype=np.float32) for name, value in named.items()}


def reference_spec() -> ModelSpec:
    """The reference model's canonical weight spec."""
    return ModelSpec.of_weights(shipped_weights())


def is_reference_model(name: str, specs: Iterable[WeightLike]) -> bool:
    """Whether a model is fedge's reference model: its name and its whole
    weight spec (names, shapes, dtypes, in order) are the reference's.

    Only the reference model gets the reference task's labels and test
    data; a model that merely takes 8x8x1 inputs is not the digits task.
    """
    if name != REFERENCE_MODEL_NAME:
        return False
    given = [(s.name, tuple(s.shape), s.dtype) for s in specs]
    return given == [(s.name, tuple(s.shape), s.dtype) for s in reference_spec()]


def write_shipped_weights(path: Path | None = None, seed: int = DEFAULT_SEED) -> Path:
    """(Re)generate the shipped file from the model built with TensorFlow."""
    target = path or Path(__file__).with_name(WEIGHTS_FILE)
    data = encode_checkpoint(Checkpoint(round_id=0, weights=build_initial_weights(seed)))
    target.write_bytes(data)
    return target


if __name__ == "__main__":
    print(f"wrote {write_shipped_weights()}")
