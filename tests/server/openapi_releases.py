"""The release routes' share of tests/server/api/test_openapi.py: every documented
operation of /v1/releases and /v1/admin (rollout, promote, rollback, the
change log), each answer checked against the document by the caller's
``CheckedClient``.

``tiny_release_tars`` makes two real bundles of the tiny model (the same
Keras file converted twice, as versions 1 and 2), as the tars a push sends.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from fedge.bundle.tar import pack_bundle
from tests.server.helpers import auth

TAR = "application/x-tar"
ADMIN = auth("admin-secret")


def tiny_release_tars(tiny_keras: Path, root: Path) -> tuple[bytes, bytes]:
    from fedge.converters.bundle import convert
    from fedge.converters.options import ConvertOptions

    tars = []
    for version in ("1", "2"):
        out = root / f"tiny-{version}"
        convert(tiny_keras, out, ConvertOptions(targets=("tflite",), verify=False, version=version))
        archive = io.BytesIO()
        pack_bundle(out, archive)
        tars.append(archive.getvalue())
    return tars[0], tars[1]


def exercise_releases(api: Any, token: str, tars: tuple[bytes, bytes]) -> None:
    """Calls every release operation, through success and refusal."""
    first, second = tars
    current, releases, one = "/v1/releases/current", "/v1/releases", "/v1/releases/{version}"
    api.call("get", current, current, headers=auth(token))  # 404: no release yet
    api.call("post", releases, releases, data=b"not a tar", content_type=TAR, headers=ADMIN)
    api.call("post", releases, releases, data=first, content_type=TAR, headers=auth(token))
    api.call("post", releases, releases, data=first, content_type=TAR)
    api.call("post", releases, releases, json={}, headers=ADMIN)  # 415
    api.call("post", releases, releases + "?notes=v1", data=first, content_type=TAR, headers=ADMIN)
    api.call("post", releases, releases, data=first, content_type=TAR, headers=ADMIN)  # 409
    api.call(
        "post", releases, releases + "?rollout=20", data=second, content_type=TAR, headers=ADMIN
    )
    api.call("get", releases, releases + "?limit=5")
    api.call("get", releases, releases + "?limit=0")
    api.call("get", one, "/v1/releases/1")
    api.call("get", one, "/v1/releases/99")
    got = api.call("get", current, current, headers=auth(token))
    api.call("get", current, current, headers={**auth(token), "If-None-Match": got.headers["ETag"]})
    api.call("get", current, current)
    rollout = "/v1/admin/rollout"
    api.call("post", rollout, rollout, json={"percent": 50, "why": "fine"}, headers=ADMIN)
    api.call("post", rollout, rollout, json={"percent": 500}, headers=ADMIN)
    api.call("post", rollout, rollout, json={"percent": 5})
    api.call("post", rollout, rollout, json={"percent": 5}, headers=auth(token))
    promote = "/v1/admin/releases/{version}/promote"
    api.call("post", promote, "/v1/admin/releases/1/promote", json={}, headers=ADMIN)  # 409
    api.call("post", promote, "/v1/admin/releases/9/promote", json={}, headers=ADMIN)  # 404
    api.call("post", promote, "/v1/admin/releases/2/promote", json={"why": "ok"}, headers=ADMIN)
    api.call("post", rollout, rollout, json={"percent": 5}, headers=ADMIN)  # 404: no candidate
    rollback = "/v1/admin/rollback"
    api.call("post", rollback, rollback, json={"version": 1, "why": "back"}, headers=ADMIN)
    api.call("post", rollback, rollback, json={"version": 1, "why": "again"}, headers=ADMIN)
    api.call("post", rollback, rollback, json={"version": 9, "why": "x"}, headers=ADMIN)
    api.call("post", rollback, rollback, json={}, headers=ADMIN)  # 400: why is required
    changes = "/v1/admin/release-changes"
    api.call("get", changes, changes, headers=ADMIN)
    api.call("get", changes, changes + "?limit=x", headers=ADMIN)
    api.call("get", changes, changes, headers=auth(token))
