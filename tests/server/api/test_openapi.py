"""The OpenAPI document covers every route, and real responses match it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator

from tests.server.helpers import OCTET, auth, constant_update
from tests.server.openapi_canary import exercise_canary, tiny_canary_tar
from tests.server.openapi_health import exercise_health
from tests.server.openapi_release_cuts import exercise_release_cuts
from tests.server.openapi_releases import exercise_releases, tiny_release_tars

SPEC_PATH = Path(__file__).resolve().parents[3] / "server" / "openapi.yaml"
METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text())
    return loaded


@pytest.fixture(scope="module")
def release_tars(tiny_keras: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    """Two bundles of the tiny model, as pushed (for the release routes)."""
    return tiny_release_tars(tiny_keras, tmp_path_factory.mktemp("releases"))


@pytest.fixture(scope="module")
def canary_tar(tiny_keras: Path, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A third bundle of the tiny model: the candidate devices report on."""
    return tiny_canary_tar(tiny_keras, tmp_path_factory.mktemp("canary"))


def _template(rule: str) -> str:
    return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule)


def _operations_in_app(app: Flask) -> set[tuple[str, str]]:
    return {
        (_template(rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in (rule.methods or set()) & METHODS
    }


def _operations_in_spec(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (path, method)
        for path, item in spec["paths"].items()
        for method in item
        if method in {m.lower() for m in METHODS}
    }


def test_every_route_is_documented_and_nothing_else(app: Flask, spec: dict[str, Any]) -> None:
    assert _operations_in_app(app) == _operations_in_spec(spec)


def test_the_document_is_valid_openapi_shaped(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.1")
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            assert operation.get("summary"), f"{method} {path} has no summary"
            assert operation["responses"], f"{method} {path} has no responses"


class CheckedClient:
    """Sends requests and checks each response against the document."""

    def __init__(self, client: FlaskClient, spec: dict[str, Any]) -> None:
        self.client = client
        self.spec = spec
        self.checked: set[tuple[str, str, int]] = set()

    def call(self, method: str, template: str, url: str, **kwargs: Any) -> Any:
        response = self.client.open(url, method=method.upper(), **kwargs)
        response.get_data()
        response.close()  # a streamed file (a checkpoint) is closed here
        operation = self.spec["paths"][template][method]
        documented = operation["responses"].get(str(response.status_code))
        assert documented is not None, f"{method} {template} -> undocumented {response.status_code}"
        if "$ref" in documented:
            documented = self._resolve(documented["$ref"])
        content = documented.get("content", {})
        if "application/json" in content:
            schema = {
                **content["application/json"]["schema"],
                "components": self.spec["components"],
            }
            Draft202012Validator(schema).validate(response.get_json())
        elif content:
            mimetype = response.mimetype or ""
            assert any(mimetype.startswith(kind.split(";")[0]) for kind in content)
        self.checked.add((template, method, response.status_code))
        return response

    def _resolve(self, ref: str) -> dict[str, Any]:
        node: Any = self.spec
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        return dict(node)


def test_responses_match_the_document(
    client: FlaskClient,
    spec: dict[str, Any],
    release_tars: tuple[bytes, bytes],
    canary_tar: bytes,
) -> None:
    api = CheckedClient(client, spec)
    enrolled = api.call("post", "/v1/devices", "/v1/devices", json={"platform": "x"}).get_json()
    other = api.call("post", "/v1/devices", "/v1/devices", json={}).get_json()
    token, device = enrolled["token"], enrolled["device_id"]
    api.call("get", "/v1/devices/{device_id}", f"/v1/devices/{device}", headers=auth(token))
    api.call(
        "get", "/v1/devices/{device_id}", f"/v1/devices/{device}", headers=auth(other["token"])
    )
    api.call(
        "post",
        "/v1/devices/{device_id}/heartbeat",
        f"/v1/devices/{device}/heartbeat",
        json={"idle": True},
        headers=auth(token),
    )
    api.call(
        "post",
        "/v1/devices/{device_id}/heartbeat",
        f"/v1/devices/{device}/heartbeat",
        json={"idle": "yes"},
        headers=auth(token),
    )
    task = api.call("post", "/v1/tasks", "/v1/tasks", json={}, headers=auth(token)).get_json()
    api.call("post", "/v1/tasks", "/v1/tasks", json={})
    base = task["task"]["base_checkpoint"]
    api.call(
        "get", "/v1/checkpoints/{checkpoint_id}", f"/v1/checkpoints/{base}", headers=auth(token)
    )
    api.call(
        "get",
        "/v1/checkpoints/{checkpoint_id}",
        f"/v1/checkpoints/{base}",
        headers={**auth(token), "If-None-Match": f'"{base}"'},
    )
    api.call(
        "get", "/v1/checkpoints/{checkpoint_id}", f"/v1/checkpoints/{'f' * 64}", headers=auth(token)
    )
    upload = "/v1/rounds/{round_id}/updates"
    api.call(
        "post",
        upload,
        "/v1/rounds/1/updates",
        data=b"junk",
        content_type=OCTET,
        headers=auth(token),
    )
    api.call(
        "post",
        upload,
        "/v1/rounds/1/updates",
        data=constant_update(1, base, 1.0),
        content_type=OCTET,
        headers=auth(other["token"]),
    )
    api.call(
        "post",
        upload,
        "/v1/rounds/1/updates",
        data=constant_update(1, base, 1.0),
        content_type=OCTET,
        headers=auth(token),
    )
    api.call(
        "post",
        upload,
        "/v1/rounds/1/updates",
        data=constant_update(1, base, 1.0),
        content_type=OCTET,
        headers=auth(token),
    )
    api.call(
        "post",
        upload,
        "/v1/rounds/1/updates",
        data=constant_update(1, base, 2.0),
        content_type=OCTET,
        headers=auth(token),
    )
    api.call(
        "post",
        upload,
        "/v1/rounds/9/updates",
        data=constant_update(9, base, 1.0),
        content_type=OCTET,
        headers=auth(token),
    )
    api.call("post", "/v1/tasks", "/v1/tasks", json={}, headers=auth(other["token"]))
    api.call(
        "post",
        upload,
        "/v1/rounds/1/updates",
        data=constant_update(1, base, float("inf")),
        content_type=OCTET,
        headers=auth(other["token"]),
    )
    end = "/v1/admin/rounds/current/end"
    api.call("post", end, end, headers=auth(token))
    api.call("post", end, end)
    api.call("post", end, end, headers=auth("admin-secret"))
    api.call("post", end, end, headers=auth("admin-secret"))
    api.call("get", "/v1/rounds/current", "/v1/rounds/current")
    api.call("get", "/v1/rounds", "/v1/rounds?limit=5")
    api.call("get", "/v1/rounds", "/v1/rounds?limit=zero")
    api.call("get", "/v1/rounds/{round_id}", "/v1/rounds/1")
    api.call("get", "/v1/rounds/{round_id}", "/v1/rounds/99")
    api.call("get", "/v1/models", "/v1/models")
    api.call("get", "/v1/models/{name}", "/v1/models/tiny")
    api.call("get", "/v1/models/{name}", "/v1/models/nope")
    predict = "/v1/models/{name}/predict"  # the tiny model has no bundle to run
    api.call("post", predict, "/v1/models/tiny/predict", json={"inputs": [[1.0, 2.0]]})
    api.call(
        "post", predict, "/v1/models/tiny/predict", json={"inputs": [[1.0]]}, headers=auth(token)
    )
    files = "/v1/bundles/{bundle_id}/{file}"  # the tiny model has no bundle
    api.call("get", files, f"/v1/bundles/{'f' * 64}/manifest.json", headers=auth(token))
    api.call("get", files, f"/v1/bundles/{'f' * 64}/manifest.json")
    exercise_releases(api, token, release_tars)
    exercise_canary(api, token, canary_tar)
    exercise_health(api, token)
    exercise_release_cuts(api, token)
    for exercise in (_exercise_secagg, _exercise_events, _exercise_pages):
        exercise(api)

    assert {(t, m) for t, m, _ in api.checked} == _operations_in_spec(spec)
    assert {s for _, _, s in api.checked} >= {200, 201, 304, 400, 401, 403, 404, 409, 422}


def _exercise_secagg(api: CheckedClient) -> None:
    """This server runs plain rounds: every secure-round route is a 404, before
    any credentials are read (the secure answers are checked in
    tests/secagg/test_secure_round_http.py)."""
    for path, method in sorted(_operations_in_spec(api.spec)):
        if "/secagg" in path:
            api.call(method, path, path.replace("{round_id}", "1"), json={})


def _exercise_pages(api: CheckedClient) -> None:
    """Health, metrics and stats; the browser pages, a script or style of
    theirs, and the TF.js files."""
    api.call("get", "/healthz", "/healthz")
    api.call("get", "/metrics", "/metrics")
    api.call("get", "/v1/stats", "/v1/stats")
    api.call("get", "/", "/")
    api.call("get", "/dashboard", "/dashboard")
    api.call("get", "/static/{name}", "/static/css/fedge.css")
    api.call("get", "/static/{name}", "/static/nothing.js")
    api.call("get", "/vendor/{name}", "/vendor/tfjs/tf.min.js")
    api.call("get", "/vendor/{name}", "/vendor/tfjs-backend-wasm/tfjs-backend-wasm.wasm")
    api.call("get", "/vendor/{name}", "/vendor/tfjs/package.json")
    api.call("get", "/sdk/{name}", "/sdk/fedge.js")
    api.call("get", "/sdk/{name}", "/sdk/fedge.d.ts")
    api.call("get", "/sdk/{name}", "/sdk/package.json")  # only the SDK's two files: 404
    api.call("get", "/examples/{name}", "/examples/predict/index.html")
    api.call("get", "/examples/{name}", "/examples/../sdk/package.json")


def _exercise_events(api: CheckedClient) -> None:
    """The event stream (timeout=0: it ends at once) and the long-poll."""
    events, poll = "/v1/events", "/v1/events/poll"
    api.call("get", events, "/v1/events?after=0&timeout=0")
    api.call("get", events, "/v1/events?timeout=0", headers={"Last-Event-ID": "1"})
    api.call("get", events, "/v1/events?types=round,nope")
    api.call("get", poll, "/v1/events/poll?after=0&types=round,release")
    api.call("get", poll, "/v1/events/poll?timeout=31")
