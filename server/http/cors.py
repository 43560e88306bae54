"""CORS for pages hosted elsewhere: an allow-list of origins, and nothing else.

With ``cors_origins`` empty (the default) no response carries a CORS header,
so browsers keep other sites' pages away from the API. A request from a
listed origin gets ``Access-Control-Allow-Origin`` with that origin, the
headers a device needs to read (``ETag`` first), and a preflight answer for
the methods and request headers the API uses. No cookies are involved
(devices send bearer tokens), so credentials are never allowed.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, request

EXPOSED = "ETag, Content-Range, Retry-After"
METHODS = "GET, POST, OPTIONS"
REQUEST_HEADERS = "Authorization, Content-Type, If-None-Match, Range, Last-Event-ID"
PREFLIGHT_MAX_AGE_S = 600


def install_cors(app: Flask, origins: tuple[str, ...]) -> None:
    """Add the CORS headers for ``origins`` to every response (none if empty)."""
    if not origins:
        return
    allowed = frozenset(origins)

    @app.after_request
    def cors_headers(response: Any) -> Any:
        response.vary.add("Origin")
        origin = request.headers.get("Origin")
        if origin not in allowed:
            return response
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSED
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            response.headers["Access-Control-Allow-Methods"] = METHODS
            response.headers["Access-Control-Allow-Headers"] = REQUEST_HEADERS
            response.headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE_S)
        return response
