"""/v1/models: the model the server federates, its current checkpoint and the
bundle it came from (``bundle_id``, null for a Keras file or the built-in
reference weights; its files are under ``/v1/bundles/<bundle_id>/``)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

from fedge.server.app import context
from fedge.server.errors import NotFound

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
    coordinator, bundle = context().coordinator, context().bundle
    if name != coordinator.model_name:
        raise NotFound(f"no model {name!r}", code="unknown_model")
    return jsonify(
        {
            "name": coordinator.model_name,
            "current_checkpoint": coordinator.current_checkpoint,
            "weights": coordinator.specs.to_json(),
            "bundle_id": bundle.bundle_id if bundle is not None else None,
        }
    )
