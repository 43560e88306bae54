"""The canary routes' share of tests/server/api/test_openapi.py: reports on a
candidate (``POST /v1/releases/{version}/evaluations``) and their listing,
through success and refusal, each answer checked against the document by
the caller's ``CheckedClient``.

``tiny_canary_tar`` makes a third bundle of the tiny model (version 3), so
that a candidate can be pushed after :func:`exercise_releases` has used
the first two.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from fedge.bundle.tar import pack_bundle
from tests.server.helpers import auth

TAR = "application/x-tar"
ADMIN = auth("admin-secret")


def tiny_canary_tar(tiny_keras: Path, root: Path) -> bytes:
    from fedge.converters.bundle import convert
    from fedge.converters.options import ConvertOptions

    out = root / "tiny-3"
    convert(tiny_keras, out, ConvertOptions(targets=("tflite",), verify=False, version="3"))
    archive = io.BytesIO()
    pack_bundle(out, archive)
    return archive.getvalue()


def report(candidate: float, baseline: float, live: int) -> dict[str, Any]:
    return {
        "baseline_version": live,
        "metric": "accuracy",
        "candidate": {"loss": 0.4, "accuracy": candidate},
        "baseline": {"loss": 0.5, "accuracy": baseline},
        "num_examples": 12,
        "latency_ms": 0.3,
        "using": "candidate",
    }


def exercise_canary(api: Any, token: str, tar: bytes) -> None:
    """Pushes ``tar`` as the candidate for every device, then reports on it."""
    pushed = api.call(
        "post", "/v1/releases", "/v1/releases?rollout=100", data=tar, content_type=TAR,
        headers=ADMIN,
    ).get_json()  # fmt: skip
    version = pushed["version"]
    live = api.call("get", "/v1/releases", "/v1/releases").get_json()["rollout"]["live"]
    one, evaluations = "/v1/releases/{version}", "/v1/releases/{version}/evaluations"
    url = f"/v1/releases/{version}/evaluations"
    api.call("post", evaluations, url, json=report(0.9, 0.8, live), headers=auth(token))  # 201
    api.call("post", evaluations, url, json=report(0.9, 0.8, live), headers=auth(token))  # 200
    api.call("post", evaluations, url, json=report(0.1, 0.8, live), headers=auth(token))  # 409
    api.call("post", evaluations, url, json={"metric": "f1"}, headers=auth(token))  # 400
    api.call("post", evaluations, url, json=report(0.9, 0.8, live))  # 401
    api.call(
        "post", evaluations, "/v1/releases/99/evaluations", json=report(0.9, 0.8, live),
        headers=auth(token),
    )  # fmt: skip
    api.call("get", one, f"/v1/releases/{version}")
    api.call("get", evaluations, url, headers=ADMIN)
    api.call("get", evaluations, url + "?limit=0", headers=ADMIN)
    api.call("get", evaluations, url)
    api.call("get", evaluations, url, headers=auth(token))
    api.call("get", evaluations, "/v1/releases/99/evaluations", headers=ADMIN)
