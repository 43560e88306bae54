"""A release build's work: the live model with a checkpoint's weights, converted.

Runs in the release worker (:mod:`fedge.server.releases.build.worker`), never in
the server process: it imports TensorFlow and takes seconds to minutes.

1. the live bundle is checked file by file (:func:`fedge.bundle.manifest.open_bundle`);
2. its Keras artifact (``artifacts.keras.entry``) gives the architecture,
   loaded the safe way (a Python ``Lambda`` layer is refused: the server
   never runs code from a bundle);
3. the checkpoint's weights, checked against the manifest's weight spec,
   are set in the spec's canonical order (Keras's ``set_weights`` order);
4. the model is saved beside ``out`` and converted into ``out`` by
   :func:`fedge.converters.bundle.convert`, with the options the live
   bundle was made with (:func:`fedge.server.releases.build.options.options_like`)
   and parity verified.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fedge.bundle.manifest import open_bundle
from fedge.converters.targets.keras_target import SAVED_MODEL_FORMAT
from fedge.errors import FedgeError
from fedge.server.releases.build.options import options_like
from fedge.server.releases.build.wire import BuildJob
from fedge.wire.update_codec import decode_checkpoint
from fedge.wire.weight_spec import ModelSpec

Say = Callable[[str, str], None]
KERAS_FILE = "model.keras"


class BuildError(FedgeError):
    """The live bundle cannot be rebuilt with the checkpoint's weights."""


def build_release(job: BuildJob, say: Say) -> Path:
    """Write the new bundle at ``job.out``; returns it."""
    from fedge.converters.bundle import convert
    from fedge.converters.source.model_io import load_keras_model

    live_dir, out = Path(job.live_bundle), Path(job.out)
    say("checking", "checking the live release's bundle")
    manifest = open_bundle(live_dir).manifest
    keras = manifest.artifact("keras")
    if keras.get("format") == SAVED_MODEL_FORMAT:
        raise BuildError(
            "the live release's model is a plain SavedModel, whose weights cannot be set; "
            "push a bundle converted from a Keras model"
        )
    say("checkpoint", f"reading checkpoint {Path(job.checkpoint).stem[:12]}")
    weights = decode_checkpoint(Path(job.checkpoint).read_bytes(), manifest.weights).weights
    options = options_like(manifest, job.version)
    say("model", f"loading the live release's Keras model ({keras['entry']})")
    try:
        model = load_keras_model(live_dir / str(keras["entry"]), options)
    except FedgeError as exc:
        raise BuildError(f"cannot load the live release's Keras model: {exc}") from exc
    differences = manifest.weights.differences(
        ModelSpec.from_keras(model), "in the manifest", "in the model"
    )
    if differences:
        raise BuildError(
            f"the live release's model does not match its manifest: {'; '.join(differences)}"
        )
    model.set_weights(manifest.weights.values(weights))
    keras_path = out.parent / KERAS_FILE
    model.save(keras_path)
    say("converting", f"converting to {', '.join(options.targets)}")
    convert(keras_path, out, options, progress=say)
    return out
