"""The Flask app factory: configuration, database, coordinator, blueprints.

``create_app()`` reads the configuration (defaults, file, environment,
then ``test_config``), opens the data directory, recovers the coordinator
and registers one blueprint per resource. Errors become JSON in one place.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from fedge.manifest import TensorSpec
from fedge.server.auth import load_or_create_admin_token
from fedge.server.config import ServerConfig, load_config
from fedge.server.coordinator import Coordinator
from fedge.server.db import Database
from fedge.server.errors import ServerError
from fedge.server.logs import configure_logging
from fedge.server.metrics import server_metrics
from fedge.update_codec import Weights

EXTENSION = "fedge"
log = logging.getLogger("fedge.server")


@dataclass(frozen=True)
class InitialModel:
    name: str
    specs: list[TensorSpec]
    weights: Weights


@dataclass
class ServerContext:
    """What the views need, attached to the app (not module globals)."""

    config: ServerConfig
    db: Database
    coordinator: Coordinator
    admin_token: str


def create_app(
    test_config: dict[str, Any] | None = None,
    config_file: Path | None = None,
    initial: InitialModel | None = None,
) -> Flask:
    config = load_config(path=config_file, overrides=test_config)
    configure_logging()
    app = Flask("fedge.server")
    app.config.from_mapping(MAX_CONTENT_LENGTH=config.max_update_bytes, JSON_SORT_KEYS=False)
    if initial is None:
        from fedge.server.initial_model import load_initial_weights

        name, specs, weights = load_initial_weights(config.model, config.seed)
        initial = InitialModel(name, specs, weights)
    metrics = server_metrics()
    db = Database(config.database)
    coordinator = Coordinator(config, db, initial.specs, initial.weights, metrics, initial.name)
    app.extensions[EXTENSION] = ServerContext(
        config=config,
        db=db,
        coordinator=coordinator,
        admin_token=load_or_create_admin_token(config.data_dir, config.admin_token),
    )
    _register(app)
    return app


def context() -> ServerContext:
    from flask import current_app

    ctx: ServerContext = current_app.extensions[EXTENSION]
    return ctx


def _register(app: Flask) -> None:
    from fedge.server import api_devices, api_health, api_models, api_rounds

    for module in (api_devices, api_rounds, api_models, api_health):
        app.register_blueprint(module.bp)

    @app.errorhandler(ServerError)
    def server_error(exc: ServerError) -> Any:
        return _error(exc.status, exc.code, exc.message)

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc: RequestEntityTooLarge) -> Any:
        limit = context().config.max_update_bytes
        return _error(413, "payload_too_large", f"request body over the {limit}-byte limit")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        code = (exc.name or "error").lower().replace(" ", "_")
        return _error(exc.code or 500, code, exc.description or code)

    @app.before_request
    def started() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def account(response: Any) -> Any:
        metrics = context().coordinator.metrics
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        metrics.inc("fedge_http_requests_total", route=route, status=str(response.status_code))
        metrics.inc("fedge_http_bytes_in_total", float(request.content_length or 0))
        if not response.is_streamed:
            metrics.inc("fedge_http_bytes_out_total", float(response.content_length or 0))
        log.info(
            "request",
            extra={
                "fields": {
                    "method": request.method,
                    "route": route,
                    "status": response.status_code,
                    "ms": round(
                        (time.perf_counter() - g.get("started", time.perf_counter())) * 1000, 2
                    ),
                }
            },
        )
        return response


def _error(status: int, code: str, message: str) -> Any:
    if request.url_rule is not None and request.url_rule.rule.endswith("/updates"):
        context().coordinator.metrics.inc("fedge_updates_rejected_total", reason=code)
    response = jsonify({"code": code, "message": message})
    response.status_code = status
    return response
