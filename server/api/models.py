"""/v1/models: the model the server federates, its current checkpoint and its
live release's bundle (``bundle_id``: the bundle it started from until a
push or a cut release is promoted; null for a Keras file or the built-in
reference weights with nothing released; its files are under
``/v1/bundles/<bundle_id>/``)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

from fedge.server.errors import NotFound
from fedge.server.http.context import context

bp = Blueprint("models", __name__, url_prefix="/v1/models")


@bp.get("")
def listing() -> Any:
    coordinator = context().coordinator
    return jsonify(
        {
            "models": [
                {
                    "name": coordinator.model_name,
                    "current_checkpoint": coordinator.current_checkpoint,
                }
            ]
        }
    )


@bp.get("/<name>")
def show(name: str) -> Any:
    ctx = context()
    coordinator = ctx.coordinator
    if name != coordinator.model_name:
        raise NotFound(f"no model {name!r}", code="unknown_model")
    with ctx.store.reading() as tx:
        live, _ = tx.releases.delivering()
    return jsonify(
        {
            "name": coordinator.model_name,
            "current_checkpoint": coordinator.current_checkpoint,
            "weights": coordinator.specs.to_json(),
            "bundle_id": live.bundle_id if live is not None else None,
        }
    )
