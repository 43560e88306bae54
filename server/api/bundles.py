"""/v1/bundles: the files of the server's bundles, for devices.

A bundle is served if it is a release's (the one the server started from
is release 1; see :mod:`fedge.server.releases.registry`). Only a stored bundle's
``manifest.json``, ``manifest.sha256`` and the files its manifest lists
are served, looked up by their exact path in the manifest (so ``..`` or an
absolute path names nothing). A file never changes under its bundle id:
the ETag is its sha256 from the manifest (for ``manifest.json``, the
bundle id itself) and caches may keep it for good.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, send_file

from fedge.server.api.common import authenticated_device
from fedge.server.errors import NotFound
from fedge.server.http.context import context

bp = Blueprint("bundles", __name__, url_prefix="/v1/bundles")

_ONE_YEAR_S = 31536000
_SHOWN = 200  # characters of a requested name echoed in an error


# merge_slashes=False: ".../<id>//etc/passwd" is a 404, not a redirect to
# ".../<id>/etc/passwd".
@bp.get("/<bundle_id>/<path:file>", merge_slashes=False)
def bundle_file(bundle_id: str, file: str) -> Any:
    authenticated_device()
    bundle = context().releases.bundle(bundle_id)
    if bundle is None:
        raise NotFound(f"no bundle {bundle_id[:_SHOWN]!r}", code="unknown_bundle")
    entry = bundle.files.get(file)
    if entry is None:
        raise NotFound(
            f"bundle {bundle_id[:12]} has no file {file[:_SHOWN]!r}", code="unknown_file"
        )
    # Streamed from the blob's local file, with Range (206) and If-None-Match (304).
    response = send_file(
        context().blobs.bundles.local_path(f"{bundle_id}/{entry.path}"),
        mimetype="application/json" if entry.path.endswith(".json") else "application/octet-stream",
        etag=entry.sha256,
        conditional=True,
        max_age=_ONE_YEAR_S,
    )
    response.cache_control.public = False
    response.cache_control.private = True
    response.cache_control.immutable = True
    return response
