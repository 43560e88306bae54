"""The Flask app factory: configuration, data directory, coordinator, blueprints.

``create_app()`` reads the configuration (defaults, file, environment,
then ``test_config``), takes the data directory's lock (one server per
directory), opens the database, recovers the coordinator, starts its round
driver and registers one blueprint per resource. Errors become JSON in one
place. ``shutdown(app)`` stops the driver and releases the directory.

The model's name and weight spec are kept in the database, so a restart
reads its checkpoint without loading the model (nor importing TensorFlow).
A model from a bundle directory keeps a copy of its bundle in the bundle
blob store, for devices (see :mod:`fedge.server.storage.bundles`); the blob
stores are built here, once (:class:`~fedge.server.storage.blobs.BlobStores`).
"""

from __future__ import annotations

import errno
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask, g, jsonify, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from fedge.server.config import ServerConfig, load_config
from fedge.server.devices.auth import load_or_create_admin_token
from fedge.server.devices.expiry import DeviceExpiry
from fedge.server.devices.issuer import DeviceIssuer
from fedge.server.devices.slots import ClientSlots
from fedge.server.errors import (
    ConfigurationError,
    InsufficientStorage,
    ServerError,
)
from fedge.server.events.feed import EventFeed
from fedge.server.http.context import EXTENSION, ServerContext, context, context_of
from fedge.server.http.cors import install_cors
from fedge.server.http.logs import configure_logging
from fedge.server.http.rate_limits import install_rate_limits
from fedge.server.http.request_limits import RequestLimits
from fedge.server.http.security_headers import install_security_headers
from fedge.server.metrics import Metrics, server_metrics
from fedge.server.predict.serving import ServingModels
from fedge.server.releases import slice_key
from fedge.server.releases.build.builder import open_builder
from fedge.server.releases.canary.deadline import attach_deadline
from fedge.server.releases.policy import attach_policy
from fedge.server.releases.registry import open_releases
from fedge.server.rounds.coordinator import Coordinator
from fedge.server.rounds.rejection_tally import attributed_round
from fedge.server.storage.blobs import BlobStores
from fedge.server.storage.bundles import StoredBundle, is_bundle_dir, open_stored, store_bundle
from fedge.server.storage.channels import EVENTS_CHANNEL
from fedge.server.storage.data_dir import DataDirLock
from fedge.server.storage.opening import open_store
from fedge.server.storage.store import Store, StoreError, StoreFull, StoreUnavailable
from fedge.wire.strict_json import finite_or_null
from fedge.wire.update_codec import Weights
from fedge.wire.weight_spec import ModelSpec

MODEL_STATE = "model"
log = logging.getLogger("fedge.server")


@dataclass(frozen=True)
class InitialModel:
    name: str
    specs: ModelSpec
    weights: Weights


class StrictJSONProvider(DefaultJSONProvider):
    """Responses are strict JSON: a non-finite float is sent as null, never
    as the ``Infinity`` or ``NaN`` that JSON parsers refuse."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        # Encoded as it is first: only an answer that holds a non-finite
        # float (json refuses it with allow_nan=False) is copied with nulls.
        try:
            return super().dumps(obj, allow_nan=False, **kwargs)
        except ValueError:
            return super().dumps(finite_or_null(obj), **kwargs)


def create_app(
    test_config: dict[str, Any] | None = None,
    config_file: Path | None = None,
    initial: InitialModel | None = None,
    blobs: BlobStores | None = None,
) -> Flask:
    """``blobs``: where updates, checkpoints, strategy state and bundles are
    kept; by default the directories of the data directory (an embedding
    may pass other stores: an object store's, say)."""
    config = load_config(path=config_file, overrides=test_config)
    blobs = BlobStores.under(config.data_dir) if blobs is None else blobs
    issuer = _issuer(config)  # a key file that will not do stops the start before the data dir
    configure_logging()
    # Shared among the workers of a PostgreSQL database; SQLite's owner holds it alone.
    lock = DataDirLock(config.data_dir, shared=config.database is not None)
    store: Store | None = None
    try:
        store = open_store(config.data_dir, config.database, config.server_threads)
        events = EventFeed(
            streams=ClientSlots(
                config.event_streams,
                config.event_streams_per_client,
                config.reserved_of(config.event_streams),
            ),
            polls=ClientSlots(
                config.event_polls,
                config.event_streams_per_client,
                config.reserved_of(config.event_polls),
            ),
        )
        store.on_commit(events.committed)
        store.listen(EVENTS_CHANNEL, events.wake)  # other processes' events (PostgreSQL)
        name, specs, weights, bundle = _model(config, store, initial, blobs)
        metrics = server_metrics()
        coordinator = Coordinator(config, store, specs, weights, metrics, name, blobs)
        limits = RequestLimits.for_model(config, specs)
        app = Flask("fedge.server", static_folder=None)  # /static/ is web_pages.py's
        app.json = StrictJSONProvider(app)
        app.config.from_mapping(MAX_CONTENT_LENGTH=limits.max_body_bytes)
        slice_key.ensure(store)  # the canary slice's secret, made at the first start
        releases = open_releases(config.data_dir, blobs.bundles, store, name, specs, bundle)
        builds = open_builder(config, store, releases, coordinator)
        attach_policy(config.release_every_rounds, store, builds, coordinator)
        attach_deadline(config, store, coordinator)
        app.extensions[EXTENSION] = ServerContext(
            config=config,
            store=store,
            blobs=blobs,
            coordinator=coordinator,
            admin_token=load_or_create_admin_token(config.data_dir, config.admin_token),
            limits=limits,
            lock=lock,
            releases=releases,
            builds=builds,
            bundle=bundle,
            events=events,
            issuer=issuer,
            expiry=DeviceExpiry(store, config.device_ttl_s, metrics)
            if config.device_ttl_s
            else None,
            serving=ServingModels(
                ClientSlots(config.predict_concurrency, config.predict_per_device)
            ),
        )
        _time_requests(app)  # first, so a request refused by any hook is timed too
        install_rate_limits(app)
        _register(app)
        install_cors(app, config.cors_origins)
        install_security_headers(app, config.frame_ancestors)
        coordinator.start()
        if (expiry := context_of(app).expiry) is not None:
            expiry.start()
    except BaseException:
        if store is not None:
            store.close()
        lock.release()
        raise
    return app


def shutdown(app: Flask) -> None:
    context_of(app).close()


def _issuer(config: ServerConfig) -> DeviceIssuer | None:
    if config.device_issuer is None:
        return None
    return DeviceIssuer.load(
        config.device_issuer, config.device_audience, config.device_issuer_name
    )


def _expiry(config: ServerConfig, store: Store, metrics: Metrics) -> DeviceExpiry | None:
    return DeviceExpiry(store, config.device_ttl_s, metrics) if config.device_ttl_s else None


def _model(
    config: ServerConfig, store: Store, initial: InitialModel | None, blobs: BlobStores
) -> tuple[str, ModelSpec, Weights | None, StoredBundle | None]:
    """The model's name and spec: stored at first start, read back later.

    Only a new data directory needs the initial weights (from a bundle or
    the shipped reference weights: no TensorFlow, see
    :mod:`fedge.server.rounds.initial_model`); a restart must be given the same
    model as the first start (or none), else it is refused. A model from
    a bundle directory is kept with its bundle, checked again at every start.
    """
    with store.reading() as tx:
        stored = tx.state.get(MODEL_STATE)
    source = str(config.model) if config.model is not None else None
    if stored is not None:
        saved = json.loads(stored)
        specs = ModelSpec.from_json(saved["weights"])
        if initial is not None and (initial.name, initial.specs) != (saved["name"], specs):
            raise ConfigurationError(
                f"the data directory {config.data_dir} federates {saved['name']!r}, "
                f"not {initial.name!r}; use another --data-dir"
            )
        if initial is None and source is not None and source != saved.get("source"):
            raise ConfigurationError(
                f"the data directory {config.data_dir} federates the model from "
                f"{saved.get('source') or 'the built-in reference'}, not {source}; "
                "start with the same --model, or use another --data-dir"
            )
        bundle_id = saved.get("bundle")
        bundle = open_stored(blobs.bundles, str(bundle_id)) if bundle_id is not None else None
        return str(saved["name"]), specs, None, bundle
    bundle = None
    if initial is None:
        from fedge.server.rounds.initial_model import load_initial_weights

        name, specs, weights = load_initial_weights(config.model, config.seed)
        initial = InitialModel(name, specs, weights)
        if config.model is not None and is_bundle_dir(config.model):
            bundle = store_bundle(config.model, config.data_dir, blobs.bundles)
    record = {
        "name": initial.name,
        "source": source,
        "weights": initial.specs.to_json(),
        "bundle": bundle.bundle_id if bundle is not None else None,
    }
    with store.transaction() as tx:
        tx.state.set(MODEL_STATE, json.dumps(record))
    return initial.name, initial.specs, initial.weights, bundle


def _register(app: Flask) -> None:
    from fedge.server.api import bundles as api_bundles
    from fedge.server.api import canary as api_canary
    from fedge.server.api import devices as api_devices
    from fedge.server.api import events as api_events
    from fedge.server.api import health as api_health
    from fedge.server.api import models as api_models
    from fedge.server.api import predict as api_predict
    from fedge.server.api import release_admin as api_release_admin
    from fedge.server.api import release_cuts as api_release_cuts
    from fedge.server.api import release_health as api_release_health
    from fedge.server.api import releases as api_releases
    from fedge.server.api import rounds as api_rounds
    from fedge.server.api import secure_rounds as api_secure_rounds
    from fedge.server.api import stats as api_stats
    from fedge.server.http import web_pages

    for module in (
        api_devices,
        api_rounds,
        api_secure_rounds,
        api_models,
        api_predict,
        api_releases,
        api_canary,
        api_release_health,
        api_release_admin,
        api_release_cuts,
        api_bundles,
        api_events,
        api_health,
        api_stats,
        web_pages,
    ):
        app.register_blueprint(module.bp)

    @app.errorhandler(ServerError)
    def server_error(exc: ServerError) -> Any:
        response = _error(exc.status, exc.code, exc.message)
        if exc.retry_after is not None:
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc: RequestEntityTooLarge) -> Any:
        limit = request.max_content_length
        return _error(413, "payload_too_large", f"request body over the {limit}-byte limit")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        code = (exc.name or "error").lower().replace(" ", "_")
        response = _error(exc.code or 500, code, exc.description or code)
        for header, value in exc.get_headers():
            if header.lower() not in ("content-type", "content-length"):
                response.headers[header] = value  # e.g. Allow on a 405
        return response

    @app.errorhandler(OSError)
    def os_error(exc: OSError) -> Any:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return _storage_full(exc)
        return _internal(exc)

    @app.errorhandler(StoreError)
    def database_error(exc: StoreError) -> Any:
        if isinstance(exc, StoreFull):
            return _storage_full(exc)
        if isinstance(exc, StoreUnavailable):
            return _database_unavailable(exc)
        return _internal(exc)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Any:
        if isinstance(exc, HTTPException):
            return http_error(exc)
        return _internal(exc)

    @app.after_request
    def account(response: Any) -> Any:
        metrics = context().coordinator.metrics
        # The route's template, never the raw path: one series per route.
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        seconds = time.perf_counter() - g.get("started", time.perf_counter())
        status = response.status_code
        metrics.inc("fedge_http_requests_total", route=route, status=str(status))
        metrics.observe(
            "fedge_http_request_seconds", seconds, route=route, status_class=f"{status // 100}xx"
        )
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
                    "ms": round(seconds * 1000, 2),
                }
            },
        )
        return response


def _time_requests(app: Flask) -> None:
    @app.before_request
    def started() -> None:
        g.started = time.perf_counter()


def _storage_full(exc: Exception) -> Any:
    log.error("storage full: %s", exc)
    full = InsufficientStorage("the server is out of storage; try again later")
    return _error(full.status, full.code, full.message)


def _database_unavailable(exc: Exception) -> Any:
    """The database cannot answer now (unreachable, restarting, busy past
    its wait): the request changed nothing (its transaction rolled back),
    and the same request later may succeed."""
    log.warning("database unavailable: %s", exc)
    response = _error(503, "database_unavailable", "the database cannot answer now; retry shortly")
    response.headers["Retry-After"] = "1"
    return response


def _internal(exc: Exception) -> Any:
    log.error("internal error", exc_info=exc)
    return _error(500, "internal", "internal server error")


def _tally_rejection(code: str) -> None:
    """Count a refused upload against its round, for ``GET /v1/stats``."""
    ctx = context()
    sent_to = (request.view_args or {}).get("round_id")
    round_id = attributed_round(ctx.store, sent_to)
    if round_id is not None:
        ctx.rejections.record(round_id, code)


def _error(status: int, code: str, message: str) -> Any:
    if request.url_rule is not None and request.url_rule.rule.endswith("/updates"):
        context().coordinator.metrics.inc("fedge_updates_rejected_total", reason=code)
        _tally_rejection(code)
    response = jsonify({"code": code, "message": message})
    response.status_code = status
    return response
