"""The browser pages: the demo (``/``), the dashboard (``/dashboard``), their
scripts (``/static/...``), the TF.js files they run (``/vendor/...``), the
web SDK (``/sdk/fedge.js`` and its types ``/sdk/fedge.d.ts``, from
``web/sdk/``) and the example apps built on it (``/examples/...``).

Everything is served by the server itself, same origin as the API: no CDN,
nothing fetched from another host. TF.js and its wasm backend come from the
npm packages pinned by ``web/package-lock.json`` (found as
:func:`fedge.web.find_node_modules` says); only the files named in
:data:`VENDOR` are served from there.

Pages are cross-origin isolated (COOP ``same-origin`` + COEP
``require-corp``): the wasm backend then gets threads and the page a fine
timer. Everything is revalidated (``no-cache`` with an ETag), so a new
fedge version's pages are used at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint, send_file
from werkzeug.security import safe_join

from fedge.server.errors import NotFound, Unavailable
from fedge.web import ROOT, NodePackagesError, find_node_modules

bp = Blueprint("web", __name__)

STATIC = ROOT / "static"
SDK = ROOT / "sdk"
SDK_FILES = ("fedge.js", "fedge.d.ts")
EXAMPLES = ROOT / "examples"
PAGES = {"demo": "index.html", "dashboard": "dashboard.html"}
# URL path under /vendor/ -> the file under node_modules.
VENDOR = {
    "tfjs/tf.min.js": "@tensorflow/tfjs/dist/tf.min.js",
    "tfjs-backend-wasm/tf-backend-wasm.min.js": (
        "@tensorflow/tfjs-backend-wasm/dist/tf-backend-wasm.min.js"
    ),
    **{
        f"tfjs-backend-wasm/{name}": f"@tensorflow/tfjs-backend-wasm/dist/{name}"
        for name in (
            "tfjs-backend-wasm.wasm",
            "tfjs-backend-wasm-simd.wasm",
            "tfjs-backend-wasm-threaded-simd.wasm",
        )
    },
}
MIME_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".ts": "application/typescript; charset=utf-8",
    ".wasm": "application/wasm",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
ISOLATION = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}


@bp.get("/")
def demo() -> Any:
    return _file(STATIC / PAGES["demo"])


@bp.get("/dashboard")
def dashboard() -> Any:
    return _file(STATIC / PAGES["dashboard"])


@bp.get("/static/<path:name>")
def static(name: str) -> Any:
    return _file(_inside(STATIC, name))


@bp.get("/sdk/<name>")
def sdk(name: str) -> Any:
    # The SDK imports the page's own modules (../static/js/shared/), served above.
    if name not in SDK_FILES:
        raise NotFound(f"no SDK file {name!r}; the SDK is /sdk/fedge.js (types: /sdk/fedge.d.ts)")
    return _file(SDK / name)


@bp.get("/examples/<path:name>")
def examples(name: str) -> Any:
    return _file(_inside(EXAMPLES, name))


@bp.get("/vendor/<path:name>")
def vendor(name: str) -> Any:
    package_file = VENDOR.get(name)
    if package_file is None:
        raise NotFound(f"no vendor file {name!r}")
    try:
        modules = find_node_modules()
    except NodePackagesError as exc:
        raise Unavailable(str(exc), code="web_packages_missing") from exc
    return _file(modules / package_file)


def _inside(root: Path, name: str) -> Path:
    joined = safe_join(str(root), name)
    if joined is None:
        raise NotFound(f"no file {name!r}")
    return Path(joined)


def _file(path: Path) -> Any:
    mimetype = MIME_TYPES.get(path.suffix)
    if mimetype is None or not path.is_file():
        raise NotFound(f"no file {path.name!r}")
    response = send_file(path, mimetype=mimetype, conditional=True, etag=True, max_age=0)
    response.headers["Cache-Control"] = "no-cache"
    response.headers.update(ISOLATION)
    return response
