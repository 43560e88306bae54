"""The health routes' share of tests/server/api/test_openapi.py: a device's
report on the release it serves (``POST /v1/releases/{version}/health``)
and the public series, through success and refusal, each answer checked
against the document by the caller's ``CheckedClient``.
"""

from __future__ import annotations

from typing import Any

from tests.server.helpers import auth

ROUTE = "/v1/releases/{version}/health"


def exercise_health(api: Any, token: str) -> None:
    served = api.client.get("/v1/releases/current", headers=auth(token)).get_json()
    version = served["version"]
    reply = api.client.get(f"/v1/bundles/{served['bundle_id']}/manifest.json", headers=auth(token))
    manifest = reply.get_json()
    reply.close()  # a file sent from the bundle
    width = manifest["outputs"][0]["shape"][-1]
    body: dict[str, Any] = {
        "metric": "accuracy",
        "loss": 0.5,
        "value": 0.75,
        "num_examples": 4,
        "runtime": "tflite",
        "histogram": [1] * width if width > 1 else None,
        "quantiles": None if width > 1 else [0.0, 0.1, 0.2, 0.3, 0.4],
    }
    url = f"/v1/releases/{version}/health"
    api.call("post", ROUTE, url, json=body, headers=auth(token))
    api.call("post", ROUTE, url, json=body, headers=auth(token))
    api.call("post", ROUTE, url, json={**body, "value": 0.5}, headers=auth(token))
    api.call("post", ROUTE, url, json={**body, "loss": -1}, headers=auth(token))
    api.call("post", ROUTE, url, json=body)
    api.call("post", ROUTE, "/v1/releases/99/health", json=body, headers=auth(token))
    api.call("post", ROUTE, url, data=b"{" + b" " * 20000 + b"}", headers=auth(token))
    api.call("get", ROUTE, url)
    api.call("get", ROUTE, f"{url}?limit=zero")
    api.call("get", ROUTE, "/v1/releases/99/health")
