"""Security headers: a Content-Security-Policy on every answer, the pages'
one strict enough that an injected script or style cannot run.

The pages (:mod:`fedge.server.http.web_pages`) load only their own files:
scripts and styles from this server (no inline script, style element or
``style`` attribute; a script may still set ``element.style``), TF.js from
``/vendor/``, whose wasm backend compiles WebAssembly (``'wasm-unsafe-eval'``:
WebAssembly only, never ``eval``) and starts workers that import its own
code from ``blob:`` URLs (which only a script already running on the page
can make). TF.js's bundled regenerator-runtime would fall back to
``Function(...)``; ``/static/js/csp_prelude.js`` declares its global first,
so the pages need no ``'unsafe-eval'``. Every other answer (JSON, event
streams, bundle files) loads nothing: ``default-src 'none'``.

Framing is refused (``frame-ancestors 'none'`` and ``X-Frame-Options:
DENY``) unless ``frame_ancestors`` names the origins that may embed the
pages; MIME sniffing is off; the referrer leaves only for this origin.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

PAGE_SOURCES = (
    "default-src 'self'",
    "script-src 'self' blob: 'wasm-unsafe-eval'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "connect-src 'self'",
    "worker-src 'self' blob:",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
)
OTHER_SOURCES = ("default-src 'none'",)
PAGE_MIME_TYPES = ("text/html", "text/javascript")  # a worker's script carries its own policy


def policy(sources: tuple[str, ...], frame_ancestors: tuple[str, ...]) -> str:
    ancestors = " ".join(frame_ancestors) if frame_ancestors else "'none'"
    return "; ".join([*sources, f"frame-ancestors {ancestors}"])


def install_security_headers(app: Flask, frame_ancestors: tuple[str, ...] = ()) -> None:
    """Set the headers on every answer (a view's own headers win)."""
    pages = _defaults(policy(PAGE_SOURCES, frame_ancestors), frame_ancestors)
    others = _defaults(policy(OTHER_SOURCES, frame_ancestors), frame_ancestors)

    @app.after_request
    def secure(response: Any) -> Any:
        headers = response.headers
        # One pass over the answer's headers, then appends: ``setdefault``
        # scans the list twice per header, on every request.
        present = {key.lower() for key, _ in headers}
        for lower, name, value in pages if response.mimetype in PAGE_MIME_TYPES else others:
            if lower not in present:
                headers.add(name, value)
        return response


def _defaults(csp: str, frame_ancestors: tuple[str, ...]) -> tuple[tuple[str, str, str], ...]:
    """(lower-case name, name, value) of each header an answer gets unless it has its own."""
    named = [
        ("Content-Security-Policy", csp),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "same-origin"),
    ]
    if not frame_ancestors:
        named.append(("X-Frame-Options", "DENY"))
    return tuple((name.lower(), name, value) for name, value in named)
