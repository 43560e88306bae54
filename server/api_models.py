"""/v1/models: the model the server federates and its current checkpoint."""

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
    coordinator = context().coordinator
    if name != coordinator.model_name:
        raise NotFound(f"no model {name!r}", code="unknown_model")
    return jsonify(
        {
            "name": coordinator.model_name,
            "current_checkpoint": coordinator.current_checkpoint,
            "weights": coordinator.specs.to_json(),
        }
    )
