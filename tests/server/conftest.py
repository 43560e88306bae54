from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from fedge.server.app import create_app
from tests.server.helpers import tiny_model

AppFactory = Callable[..., Flask]


@pytest.fixture
def make_app(tmp_path: Path) -> AppFactory:
    """Apps on one data directory: a second call is a restarted server."""

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
            "rounds": rounds,
            **config,
        }
        return create_app(test_config=settings, initial=tiny_model())

    return build


@pytest.fixture
def app(make_app: AppFactory) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
