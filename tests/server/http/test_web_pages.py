"""The browser pages and their files, served by the server itself, and the
CORS allow-list for pages hosted elsewhere."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from fedge.server.config import load_config
from fedge.server.errors import ConfigurationError
from fedge.server.http.web_pages import VENDOR


@dataclass(frozen=True)
class Got:
    status: int
    headers: Any
    body: bytes

    def json(self) -> Any:
        import json

        return json.loads(self.body)


def fetch(client: Any, path: str, method: str = "GET", **headers: str) -> Got:
    """One request; the response read and closed (a served file is not left open)."""
    response = client.open(path, method=method, headers=headers)
    try:
        return Got(response.status_code, response.headers, response.get_data())
    finally:
        response.close()


ISOLATED = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
}


@pytest.mark.parametrize("path", ["/", "/dashboard"])
def test_pages_are_html_and_cross_origin_isolated(client: Any, path: str) -> None:
    page = fetch(client, path)
    assert page.status == 200
    assert page.headers["Content-Type"].startswith("text/html")
    for header, value in ISOLATED.items():
        assert page.headers[header] == value
    assert page.headers["Cache-Control"] == "no-cache"
    assert b"<!doctype html>" in page.body.lower()


@pytest.mark.parametrize(
    ("path", "kind"),
    [("/static/js/demo/demo.js", "text/javascript"), ("/static/css/fedge.css", "text/css")],
)
def test_the_pages_scripts_and_styles_are_served(client: Any, path: str, kind: str) -> None:
    """Flask's own /static route (the app package's folder) must not shadow the pages'."""
    served = fetch(client, path)
    assert served.status == 200
    assert served.headers["Content-Type"].startswith(kind)
    assert served.headers["Cross-Origin-Resource-Policy"] == "same-origin"


def test_tfjs_and_its_wasm_come_from_the_locked_npm_packages(client: Any) -> None:
    script = fetch(client, "/vendor/tfjs/tf.min.js")
    assert script.status == 200
    assert script.headers["Content-Type"].startswith("text/javascript")
    assert b"4.22.0" in script.body
    for name in VENDOR:
        if name.endswith(".wasm"):
            wasm = fetch(client, f"/vendor/{name}")
            assert wasm.status == 200, name
            assert wasm.headers["Content-Type"] == "application/wasm"
            assert wasm.body[:4] == b"\0asm"


@pytest.mark.parametrize(
    "path",
    [
        "/vendor/tfjs/package.json",  # in the package, but not a served file
        "/vendor/../package-lock.json",
        "/static/../npm.py",
        "/static/%2e%2e/npm.py",
        "/static/nothing.js",
        "/sdk/package.json",  # the SDK serves its module and types only
        "/sdk/README.md",
        "/sdk/%2e%2e/npm.py",
        "/examples/../npm.py",
        "/examples/%2e%2e/sdk/package.json",
        "/examples/%2e%2e%2fnpm.py",
        "/examples/predict/nothing.js",
    ],
)
def test_nothing_outside_the_pages_and_the_named_vendor_files(client: Any, path: str) -> None:
    response = fetch(client, path)
    assert response.status == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/sdk/fedge.js", "text/javascript"),
        ("/sdk/fedge.d.ts", "application/typescript"),
        ("/examples/predict/index.html", "text/html"),
        ("/examples/predict/app.js", "text/javascript"),
    ],
)
def test_the_web_sdk_and_the_example_app_are_served(client: Any, path: str, kind: str) -> None:
    served = fetch(client, path)
    assert served.status == 200
    assert served.headers["Content-Type"].startswith(kind)
    for header, value in ISOLATED.items():
        assert served.headers[header] == value


def test_no_cors_headers_without_an_allow_list(client: Any) -> None:
    response = fetch(client, "/v1/models", Origin="https://elsewhere.example")
    assert response.status == 200
    assert "Access-Control-Allow-Origin" not in response.headers


def test_an_allowed_origin_may_read_the_etag(make_app: Any, connect: Any) -> None:
    client = connect(make_app(cors_origins=["https://app.example.com"]))
    allowed = fetch(client, "/v1/models", Origin="https://app.example.com")
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "ETag" in allowed.headers["Access-Control-Expose-Headers"].split(", ")
    assert "Origin" in allowed.headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in allowed.headers
    other = fetch(client, "/v1/models", Origin="https://evil.example")
    assert "Access-Control-Allow-Origin" not in other.headers
    assert "Access-Control-Expose-Headers" not in other.headers


def test_a_preflight_from_an_allowed_origin_names_methods_and_headers(
    make_app: Any, connect: Any
) -> None:
    client = connect(make_app(cors_origins=["http://localhost:3000"]))
    preflight = {
        "Origin": "http://localhost:3000",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    response = fetch(client, "/v1/tasks", "OPTIONS", **preflight)
    assert response.status == 200
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in response.headers["Access-Control-Allow-Headers"]


@pytest.mark.parametrize(
    "origin", ["*", "https://app.example.com/", "app.example.com", "https://a.example/path"]
)
def test_an_allow_list_entry_that_is_not_an_origin_is_refused(origin: str) -> None:
    with pytest.raises(ConfigurationError, match="not an origin"):
        load_config(overrides={"cors_origins": [origin]}, environ={})


def test_the_allow_list_from_the_environment_is_comma_separated() -> None:
    environ = {"FEDGE_CORS_ORIGINS": "https://a.example, http://localhost:8080"}
    config = load_config(environ=environ)
    assert config.cors_origins == ("https://a.example", "http://localhost:8080")
