"""Fixtures: apps on a temporary data directory, reached either through the
Flask test client or over real HTTP (the same app served by waitress on a
loopback port). Tests that take ``connect`` or ``client`` run both ways."""

from __future__ import annotations

import functools
import json as json_module
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from flask import Flask

from fedge.server.http.app import create_app, shutdown
from fedge.server.http.serve import BackgroundServer
from tests.helpers.stores import IDS, KINDS, Stores
from tests.server.helpers import tiny_model
from tests.server.parts import PartsOn, build_parts

AppFactory = Callable[..., Flask]


class HttpResponse:
    """The parts of Flask's test response the tests read, from a real one."""

    def __init__(self, response: requests.Response) -> None:
        self._response = response
        self.status_code = response.status_code
        self.data = response.content
        self.headers = response.headers
        self.mimetype = response.headers.get("Content-Type", "").split(";")[0].strip()

    def get_json(self) -> Any:
        return None if not self.data else json_module.loads(self.data)

    def get_data(self, as_text: bool = False) -> Any:
        return self.data.decode() if as_text else self.data

    def close(self) -> None:
        self._response.close()


class HttpClient:
    """A Flask-test-client-shaped client that sends real HTTP requests."""

    def __init__(self, app: Flask, url: str) -> None:
        self.application = app
        self._url = url
        self._session = requests.Session()

    def open(
        self,
        path: str,
        method: str = "GET",
        json: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        content_type: str | None = None,
    ) -> HttpResponse:
        headers = dict(headers or {})
        if content_type is not None:
            headers["Content-Type"] = content_type
        response = self._session.request(
            method, self._url + path, json=json, data=data, headers=headers, timeout=30
        )
        return HttpResponse(response)

    def get(self, path: str, **kwargs: Any) -> HttpResponse:
        return self.open(path, "GET", **kwargs)

    def post(self, path: str, **kwargs: Any) -> HttpResponse:
        return self.open(path, "POST", **kwargs)

    def close(self) -> None:
        self._session.close()


Client = Any  # FlaskClient or HttpClient: the same calls
Connect = Callable[[Flask], Client]


@pytest.fixture(params=["in_process", "http"])
def connect(request: pytest.FixtureRequest) -> Iterator[Connect]:
    """Turns an app into a client: Flask's test client, or real HTTP."""
    servers: list[BackgroundServer] = []
    clients: list[HttpClient] = []

    def build(app: Flask) -> Any:
        if request.param == "in_process":
            return app.test_client()
        server = BackgroundServer(app)
        servers.append(server)
        client = HttpClient(app, server.url)
        clients.append(client)
        return client

    try:
        yield build
    finally:
        for client in clients:
            client.close()
        for server in servers:
            server.stop()


DatabaseOf = Callable[[Path], "str | None"]


@pytest.fixture
def app_database() -> DatabaseOf:
    """The database of the apps :func:`make_app` builds, by data directory:
    None, SQLite in it. A module whose tests are the store's contract
    overrides it with :func:`on_each_store`, to run them on PostgreSQL too."""
    return lambda _data_dir: None


def on_each_store(stores: Stores) -> DatabaseOf:
    """An ``app_database`` that runs a module's app tests on each store kind
    (a database of its own for each data directory)."""
    return stores.url


@pytest.fixture
def make_app(tmp_path: Path, app_database: DatabaseOf) -> Iterator[AppFactory]:
    """Apps on one data directory: a second call is a restarted server (shut
    the first down before: one server owns a data directory). Every app is
    shut down at the end, also when the test fails."""
    apps: list[Flask] = []

    def build(**config: Any) -> Flask:
        rounds = {
            "target_participants": 2,
            "min_participants": 1,
            "deadline_s": 60.0,
            "over_selection": 1.0,
            **config.pop("rounds", {}),
        }
        settings = {
            "data_dir": tmp_path / "data",
            "admin_token": "admin-secret",
            "port": 0,
            "rounds": rounds,
            **config,
        }
        settings["database"] = app_database(Path(settings["data_dir"]))
        app = create_app(test_config=settings, initial=tiny_model())
        apps.append(app)
        return app

    try:
        yield build
    finally:
        for app in apps:
            shutdown(app)


@pytest.fixture
def app(make_app: AppFactory) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask, connect: Connect) -> Any:
    return connect(app)


@pytest.fixture(scope="session")
def tiny_keras(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Keras model whose weights are dense/kernel (2, 2) and dense/bias (2,)."""
    import tensorflow as tf

    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    inputs = tf.keras.Input((2,), name="x")
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(2, name="dense")(inputs), name="tiny")
    model.set_weights([np.zeros((2, 2), np.float32), np.zeros(2, np.float32)])
    model.save(path)
    return path


@pytest.fixture(scope="module", params=KINDS, ids=IDS)
def stores(request: pytest.FixtureRequest) -> Stores:
    """Each store kind in turn (the contract tests run on both). Module
    scoped, so that a module's shared server (a module-scoped fixture that
    takes ``stores``) runs once per kind, and its tests are grouped by kind;
    each data directory still gets a database of its own."""
    if request.param == "postgres":
        return Stores("postgres", request.getfixturevalue("postgres_cluster"))
    return Stores("sqlite")


@pytest.fixture
def parts_on(stores: Stores) -> PartsOn:
    """:func:`~tests.server.parts.build_parts` on each store kind in turn."""
    return functools.partial(build_parts, stores=stores)
