"""``fedge pull``: a server's global model (or a release) out over its HTTP API.

A user who federated gets the new model without reading the server's data
directory. The checkpoint comes from ``GET /v1/checkpoints/{id}`` (its id
is the sha256 of its bytes, checked) and the live bundle from
``/v1/bundles/{id}/`` (every file's sha256 checked against the bundle id);
a ``.keras``/``.h5`` path gets the bundle's Keras model with the
checkpoint's weights assigned by their canonical names; a directory gets
a verified bundle, rebuilt exactly as a release cut from that checkpoint
would be (:func:`fedge.converters.rebuild.convert.rebuild_bundle`: the live
bundle's conversion options, strict, parity checked). ``--release V``
writes that release's own bundle instead (or its Keras model, for a
``.keras`` path).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from fedge.cli import options
from fedge.errors import FedgeError

if TYPE_CHECKING:
    from fedge.wire.update_codec import Weights

KERAS_SUFFIXES = (".keras", ".h5")


@click.command()
@options.server(required=True, help="The server's URL, e.g. http://host:8750.")
@click.option(
    "--checkpoint",
    help="A global checkpoint's id (sha256) [default: the server's current one].",
)
@click.option(
    "--release",
    type=click.IntRange(min=1),
    help="A release's version: its own bundle, instead of a checkpoint.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="A Keras file (.keras, .h5): the model with the checkpoint's weights; or a new "
    "directory: a verified bundle (the checkpoint's, converted as the live bundle was, or "
    "with --release that release's own).",
)
def pull(server: str, checkpoint: str | None, release: int | None, out: Path) -> None:
    """Download the current (or a chosen) global model, or a release, verified."""
    if checkpoint is not None and release is not None:
        raise click.UsageError("give --checkpoint or --release, not both")
    keras_out = out.suffix in KERAS_SUFFIXES
    if out.exists():
        raise click.BadParameter(f"{out} exists already: pick a new path", param_hint="--out")
    try:
        written = _pull(server, checkpoint, release, out, keras_out)
    except FedgeError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(written)


def _pull(
    server: str, checkpoint: str | None, release: int | None, out: Path, keras_out: bool
) -> str:
    from fedge.bundle.manifest import open_bundle
    from fedge.client_sim.device.bundle_download import download_bundle
    from fedge.client_sim.device.client import FedgeClient
    from fedge.client_sim.device.transport import HttpTransport

    client = FedgeClient(HttpTransport(server.rstrip("/")), seed=0)
    try:
        # Checkpoints and bundles are served to devices: pull enrols as a
        # read-only observer (never asked for work, never in a canary count).
        client.enrol(platform="observer")
        with tempfile.TemporaryDirectory(prefix="fedge-pull-") as work:
            if release is not None:
                bundle_id = client.transport.request("GET", f"/v1/releases/{release}").json()[
                    "bundle_id"
                ]
                bundle = download_bundle(client, bundle_id, Path(work) / "bundle")
                if not keras_out:
                    shutil.copytree(bundle, out)
                    return f"release {release}: bundle {bundle_id[:12]} -> {out}"
                _keras_model(bundle, None).save(out)
                return f"release {release}: Keras model -> {out}"
            name = client.transport.request("GET", "/v1/models").json()["models"][0]["name"]
            model = client.transport.request("GET", f"/v1/models/{name}").json()
            chosen = checkpoint or model["current_checkpoint"]
            if model.get("bundle_id") is None:
                raise FedgeError(f"the server at {server} has no bundle to take the model from")
            bundle = download_bundle(client, model["bundle_id"], Path(work) / "bundle")
            open_bundle(bundle)  # verified again, as it is on disk
            weights = client.checkpoint(chosen).weights
            if not keras_out:
                _rebuilt_bundle(bundle, weights, out, f"checkpoint-{chosen[:12]}")
                return f"checkpoint {chosen[:12]}: bundle -> {out}"
            _keras_model(bundle, weights).save(out)
            return f"checkpoint {chosen[:12]}: Keras model -> {out}"
    finally:
        client.transport.close()


def _rebuilt_bundle(live: Path, weights: Weights, out: Path, version: str) -> None:
    """The live bundle with ``weights``, converted into a working directory
    beside ``out`` and moved into place whole: a failed conversion leaves
    no partial bundle at ``out``."""
    from fedge.converters.rebuild.convert import rebuild_bundle

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fedge-pull-", dir=out.parent) as work:
        built = rebuild_bundle(live, weights, Path(work) / "bundle", version, _say)
        built.rename(out)


def _say(stage: str, message: str) -> None:
    # Progress to stderr: stdout is the one line naming what was written.
    click.echo(f"{stage}: {message}", err=True)


def _keras_model(bundle: Path, weights: Weights | None) -> Any:
    """The bundle's Keras model, with ``weights`` (by canonical name) if given."""
    import tensorflow as tf

    from fedge.bundle.manifest import open_bundle
    from fedge.wire.weight_spec import ModelSpec

    manifest = open_bundle(bundle).manifest
    entry = bundle / manifest.artifact("keras")["entry"]
    model = tf.keras.models.load_model(entry, compile=False)
    if weights is not None:
        spec = ModelSpec.from_keras(model)
        differences = spec.differences(
            ModelSpec.of_weights(weights), "in the bundle's model", "in the checkpoint"
        )
        if differences:
            raise FedgeError(
                "the checkpoint does not fit the bundle's model: " + "; ".join(differences[:6])
            )
        model.set_weights(spec.values(weights))
    return model
