"""Small helpers every view uses: parse JSON, authenticate."""

from __future__ import annotations

from typing import Any

from flask import request

from fedge.server.app import context
from fedge.server.auth import Device, bearer_token, check_admin, device_for_token
from fedge.server.errors import BadRequest


def json_body() -> dict[str, Any]:
    if not request.data:
        return {}
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object", code="bad_json")
    return body


def authenticated_device() -> Device:
    token = bearer_token(request.headers.get("Authorization"))
    return device_for_token(context().db.connection(), token)


def require_admin() -> None:
    check_admin(bearer_token(request.headers.get("Authorization")), context().admin_token)


def flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise BadRequest(f"{name} must be true or false", code="bad_json")
    return value
