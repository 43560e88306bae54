"""``POST /v1/models/{name}/predict``: the model as a service, for devices
that cannot embed it.

A device (its bearer token) sends a batch per input; the server runs the
TFLite model of the bundle it serves (see :func:`serving_bundle`) and
answers the outputs by name with the bundle's id. The request's format and
its checks are in :mod:`fedge.server.predict.codec`, the interpreters in
:mod:`fedge.server.predict.serving`. A prediction changes no state.

Predictions cannot starve the server: each takes a slot of its own budget
(``predict_concurrency`` at once, ``predict_per_device`` per device) before
it reads its batch, and runs on a thread of that budget, beyond the request
threads (see :mod:`fedge.server.http.serve`); past either, 429 at once
(``too_many_predictions`` or ``predict_busy``, with ``Retry-After``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from flask import Blueprint, jsonify, request

from fedge.server.api.common import authenticated_device, json_body
from fedge.server.devices.slots import Client, ClientSlots, Refusal
from fedge.server.errors import NotFound, RateLimited, ServerError
from fedge.server.http.context import ServerContext, context
from fedge.server.predict.codec import PredictResult, parse_predict_request

bp = Blueprint("predict", __name__, url_prefix="/v1/models")

RETRY_AFTER_S = 1  # what a refused prediction is told to wait


class ServingBundle(NamedTuple):
    bundle_id: str
    bundle_dir: Path


def serving_bundle(ctx: ServerContext) -> ServingBundle | None:
    """The bundle whose model predict runs: the one place that decides it.

    The live release (never a canary: predict serves what everyone gets);
    None before any release (a server started from a Keras file or the
    built-in reference weights, with nothing pushed yet)."""
    with ctx.store.reading() as tx:
        live, _ = tx.releases.delivering()
    if live is None or live.bundle_id is None:
        return None
    stored = ctx.releases.bundle(live.bundle_id)
    if stored is None:
        return None
    return ServingBundle(stored.bundle_id, stored.root)


@bp.post("/<name>/predict")
def predict(name: str) -> Any:
    device = authenticated_device()
    ctx = context()
    if name != ctx.coordinator.model_name:
        raise NotFound(f"no model {name[:200]!r}", code="unknown_model")
    served = serving_bundle(ctx)
    if served is None:
        raise NotFound(
            f"no bundle to run for {name!r}: the server started from a Keras file or the "
            "built-in reference weights; start it from a bundle (fedge serve --model BUNDLE) "
            "or push one (fedge push)",
            code="no_release",
        )
    model = ctx.serving.model(served.bundle_id, served.bundle_dir)
    # A slot before any work on the body: parsing a batch costs as much as running it.
    held = ctx.serving.slots.acquire(Client.device(device.id))
    if isinstance(held, Refusal):
        raise _busy(held, ctx.serving.slots)
    try:
        request.max_content_length = ctx.limits.max_predict_bytes
        body = json_body(max_bytes=ctx.limits.max_predict_bytes)
        inputs = parse_predict_request(body, model.manifest.inputs, ctx.config.max_predict_batch)
        result = PredictResult(model.predict(inputs), model.bundle_id, model.manifest.version)
    finally:
        held.release()
    return jsonify(result.to_json())


def _busy(refusal: Refusal, slots: ClientSlots) -> ServerError:
    if refusal is Refusal.CLIENT_FULL:
        return RateLimited(
            f"this device already has {slots.per_client} predictions running, the most one "
            "device may; send the next when one has answered",
            RETRY_AFTER_S,
            code="too_many_predictions",
        )
    return RateLimited(
        f"the server runs at most {slots.limit} predictions at once and all are taken; "
        "retry shortly",
        RETRY_AFTER_S,
        code="predict_busy",
    )
