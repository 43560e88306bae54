"""Small helpers every view uses: parse JSON strictly, authenticate, bound ids
and list sizes."""

from __future__ import annotations

import re
from typing import Any

from flask import request
from werkzeug.exceptions import ClientDisconnected

from fedge.server.devices.auth import bearer_token, check_admin, device_for_token
from fedge.server.errors import BadRequest, NotFound, PayloadTooLarge
from fedge.server.http.context import context
from fedge.server.http.rate_limits import credential_attempt, limit_device
from fedge.server.http.request_limits import MAX_JSON_BYTES
from fedge.server.storage.devices import Device
from fedge.wire.strict_json import StrictJSONError, loads_strict

# Ids are stored as 64-bit integers; anything past this cannot name a round.
MAX_ROUND_ID = 2**62
# A list's ``?limit=``: at most four digits, so a huge number is refused by
# the pattern before ``int`` parses it.
_LIST_LIMIT = re.compile(r"[0-9]{1,4}")
_LIST_LIMIT_DEFAULT = "50"
_LIST_LIMIT_MAX = 1000


def json_body(max_bytes: int = MAX_JSON_BYTES) -> dict[str, Any]:
    """The request's JSON object (at most ``max_bytes``); anything else is a
    400 with a code.

    Parsed here rather than by Flask so that deep nesting, NaN literals,
    duplicate keys and non-UTF-8 bytes are refused as bad input instead of
    failing as a 500 (or being taken).
    """
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(f"a JSON body is at most {max_bytes} bytes")
    raw = request.get_data(cache=True)
    if not raw:
        return {}
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"a JSON body is at most {max_bytes} bytes")
    try:
        body = loads_strict(raw)
    except StrictJSONError as exc:
        raise BadRequest(f"the JSON body is {exc}", code="bad_json") from exc
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object", code="bad_json")
    return body


def binary_body(max_bytes: int) -> bytes:
    """The request's body (at most ``max_bytes``, else a 413), read from the
    WSGI input in one piece of its declared length.

    Werkzeug's ``get_data`` reads 64 KiB at a time into a growing buffer and
    then copies that: for an update of a megabyte, three passes over it, each
    into fresh memory. Without a declared length (or over the bound) it is
    still what reads or refuses the body."""
    length = request.content_length
    if length is None or length > max_bytes or request.environ.get("wsgi.input_terminated"):
        request.max_content_length = max_bytes
        return request.get_data()
    body: bytes = request.environ["wsgi.input"].read(length)
    if len(body) != length:
        raise ClientDisconnected(f"the body ended after {len(body)} of its {length} bytes")
    return body


def text_field(body: dict[str, Any], name: str, max_length: int) -> str | None:
    """An optional string field of at most ``max_length`` characters that can
    be stored (no lone surrogates)."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_length:
        raise BadRequest(
            f"{name} must be a string of at most {max_length} characters", code="bad_json"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadRequest(f"{name} is not valid Unicode text", code="bad_json") from exc
    return value


def round_id_in_range(round_id: int) -> int:
    if round_id > MAX_ROUND_ID:
        raise NotFound(f"no round {round_id}", code="unknown_round")
    return round_id


def list_limit() -> int:
    """The request's ``?limit=`` for a listing: 1..1000, 50 when absent."""
    limit = request.args.get("limit", _LIST_LIMIT_DEFAULT)
    if not _LIST_LIMIT.fullmatch(limit) or not 1 <= int(limit) <= _LIST_LIMIT_MAX:
        raise BadRequest(f"limit must be an integer in 1..{_LIST_LIMIT_MAX}", code="bad_query")
    return int(limit)


def authenticated_device() -> Device:
    """The device whose token the request carries; on a route with a
    per-device limit, one of its tokens is taken (429 when none is left)."""
    token = bearer_token(request.headers.get("Authorization"))
    with context().store.reading() as tx:
        device = device_for_token(tx.devices, token)
    limit_device(device.id)
    return device


def require_admin() -> None:
    """The admin token, or 403; an address that keeps sending wrong ones is
    refused (429) before its token is checked."""
    token = bearer_token(request.headers.get("Authorization"))
    with credential_attempt("admin"):
        check_admin(token, context().admin_token)


def flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise BadRequest(f"{name} must be true or false", code="bad_json")
    return value
