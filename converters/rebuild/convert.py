"""A bundle's model with new weights, converted as the bundle was.

1. the bundle is checked file by file (:func:`fedge.bundle.manifest.open_bundle`);
2. its Keras artifact (``artifacts.keras.entry``) gives the architecture,
   loaded the safe way (a Python ``Lambda`` layer is refused: a server
   never runs code from a bundle);
3. the weights, checked against the manifest's weight spec, are set in the
   spec's canonical order (Keras's ``set_weights`` order);
4. the model is saved beside ``out`` and converted into ``out`` by
   :func:`fedge.converters.bundle.convert`, with the options the bundle
   was made with (:func:`fedge.converters.rebuild.options.options_like`),
   strict and with parity verified.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from fedge.bundle.manifest import open_bundle
from fedge.converters.rebuild.options import options_like
from fedge.converters.targets.keras_target import SAVED_MODEL_FORMAT
from fedge.errors import FedgeError
from fedge.wire.weight_spec import ModelSpec

if TYPE_CHECKING:
    from fedge.wire.update_codec import Weights

Say = Callable[[str, str], None]
KERAS_FILE = "model.keras"


class RebuildError(FedgeError):
    """The bundle cannot be rebuilt with these weights."""


def rebuild_bundle(source: Path, weights: Weights, out: Path, version: str, say: Say) -> Path:
    """Write at ``out`` the bundle ``source`` with ``weights`` (by canonical
    name), as version ``version``; returns ``out``. The Keras model is saved
    beside ``out`` first (``out.parent`` is the caller's working directory)."""
    from fedge.converters.bundle import convert
    from fedge.converters.source.model_io import load_keras_model

    say("checking", "checking the bundle the model comes from")
    manifest = open_bundle(source).manifest
    keras = manifest.artifact("keras")
    if keras.get("format") == SAVED_MODEL_FORMAT:
        raise RebuildError(
            "the bundle's model is a plain SavedModel, whose weights cannot be set; "
            "push a bundle converted from a Keras model"
        )
    differences = manifest.weights.differences(
        ModelSpec.of_weights(weights), "in the manifest", "in the checkpoint"
    )
    if differences:
        raise RebuildError(
            "the checkpoint does not fit the bundle's model: " + "; ".join(differences[:6])
        )
    options = options_like(manifest, version)
    say("model", f"loading the bundle's Keras model ({keras['entry']})")
    try:
        model = load_keras_model(source / str(keras["entry"]), options)
    except FedgeError as exc:
        raise RebuildError(f"cannot load the bundle's Keras model: {exc}") from exc
    differences = manifest.weights.differences(
        ModelSpec.from_keras(model), "in the manifest", "in the model"
    )
    if differences:
        raise RebuildError(
            f"the bundle's model does not match its manifest: {'; '.join(differences)}"
        )
    model.set_weights(manifest.weights.values(weights))
    keras_path = out.parent / KERAS_FILE
    model.save(keras_path)
    say("converting", f"converting to {', '.join(options.targets)}")
    convert(keras_path, out, options, progress=say)
    return out
