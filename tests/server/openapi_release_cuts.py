"""The release cuts' share of tests/server/api/test_openapi.py: POST
/v1/admin/releases through its refusals and one real cut (whose worker the
app's shutdown stops), and the building release as GET /v1/releases/{version}
shows it, each answer checked against the document by the caller's
``CheckedClient``. Call it once a release is live (after
:func:`tests.server.openapi_releases.exercise_releases`).
"""

from __future__ import annotations

from typing import Any

from tests.server.helpers import auth

ADMIN = auth("admin-secret")


def exercise_release_cuts(api: Any, token: str) -> None:
    cuts, one = "/v1/admin/releases", "/v1/releases/{version}"
    api.call("post", cuts, cuts, json={})  # 401
    api.call("post", cuts, cuts, json={}, headers=auth(token))  # 403: a device
    api.call("post", cuts, cuts, json={"rollout": "all"}, headers=ADMIN)  # 400
    api.call("post", cuts, cuts, json={"checkpoint": "e" * 64}, headers=ADMIN)  # 404
    cut = api.call("post", cuts, cuts, json={"notes": "from the round"}, headers=ADMIN).get_json()
    api.call("get", one, f"/v1/releases/{cut['version']}")  # building, with its progress
    api.call("post", cuts, cuts, json={}, headers=ADMIN)  # 409: one build at a time
