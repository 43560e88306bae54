"""Run the app under waitress (a production WSGI server).

Waitress is told the largest body the app accepts, so it refuses a larger
one itself instead of spooling it to disk first, and the errors it answers
on its own (a body over the limit, a malformed request) are JSON with a
``code``, like every other error of the server.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from types import FrameType
from typing import Any

from flask import Flask
from waitress.task import ErrorTask

from fedge.blas_threads import single_blas_thread
from fedge.server.http.connections import (
    CHECK_EVERY_S,
    ConnectionLimits,
    GuardedChannel,
    guard,
    guarded,
)
from fedge.server.http.context import EXTENSION, ServerContext
from fedge.server.http.route_limits import with_route_limits

log = logging.getLogger("fedge.server")

# Headers and framing on top of the largest body the app accepts.
_BODY_SLACK_BYTES = 64 * 1024


# Request bodies kept in memory (larger ones go to a temporary file), and
# the most read from a socket at once (waitress: 512 KiB and 8 KiB).
_BODY_IN_MEMORY_BYTES = 2 * 2**20
_RECV_BYTES = 256 * 1024

# What a refused client may still send, and for how long, before the
# connection closes anyway (fedge.server.http.connections).
_DRAIN_AT_LEAST_BYTES = 64 * 2**20
_DRAIN_S = 30.0

# The same codes the app uses for the same errors.
_CODES = {413: "payload_too_large"}


class JsonErrorTask(ErrorTask):  # type: ignore[misc]
    """Waitress's own error responses as ``{"code", "message"}`` JSON."""

    def execute(self) -> None:
        error = self.request.error
        code = _CODES.get(error.code) or str(error.reason).lower().replace(" ", "_")
        body = json.dumps({"code": code, "message": str(error.body)}).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class JsonErrorChannel(GuardedChannel):
    error_task_class = JsonErrorTask


def _create(app: Flask) -> Any:
    from waitress.server import create_server

    single_blas_thread()  # the request threads are the parallelism
    ctx: ServerContext = app.extensions[EXTENSION]
    config = ctx.config
    server: Any = create_server(
        app,
        host=config.host,
        port=config.port,
        # The request threads, and the threads of the stream, long-poll and
        # predict budgets: each of those takes a slot of its budget before it
        # runs long, so it never holds one of the request threads.
        threads=config.server_threads,
        connection_limit=config.connection_limit,
        channel_timeout=config.idle_timeout_s,
        cleanup_interval=CHECK_EVERY_S,
        max_request_body_size=ctx.limits.max_body_bytes + _BODY_SLACK_BYTES,
        asyncore_use_poll=True,  # select() stops at 1024 descriptors
        # Read ahead while a response runs, so that an event stream notices a
        # client that has gone (waitress.client_disconnected) and frees its thread.
        channel_request_lookahead=1,
        ident="fedge",
        # An upload's body up to this size stays in memory instead of being
        # spooled to a temporary file and read back (at most one per
        # connection), and is read in large pieces: most of an update's
        # cost in waitress's own loop was these.
        inbuf_overflow=_BODY_IN_MEMORY_BYTES,
        recv_bytes=_RECV_BYTES,
        # X-Forwarded-For reaches the app only with trusted_proxies set; the
        # app believes it only from them (fedge.server.devices.rate_limits).
        clear_untrusted_proxy_headers=not ctx.config.trusted_proxies,
    )
    # Release uploads (admin) are bundles, predict requests batches of
    # inputs: each its own bound, on its route only.
    from fedge.server.api.releases import UPLOAD_ROUTE

    predict_route = ("POST", f"/v1/models/{ctx.coordinator.model_name}/predict")
    limits = ConnectionLimits(
        header_timeout_s=config.request_header_timeout_s,
        request_timeout_s=config.request_timeout_s,
        per_address=config.max_connections_per_address,
        drain_bytes=max(2 * server.adj.max_request_body_size, _DRAIN_AT_LEAST_BYTES),
        drain_s=_DRAIN_S,
    )
    server.channel_class = with_route_limits(
        guarded(JsonErrorChannel, limits),
        server.adj,
        {
            UPLOAD_ROUTE: config.max_release_bytes + _BODY_SLACK_BYTES,
            predict_route: ctx.limits.max_predict_bytes + _BODY_SLACK_BYTES,
        },
    )
    guard(server)
    return server


def _close(server: Any) -> None:
    """Stop listening and drop idle keep-alive connections, so run() returns."""
    server.close()
    for channel in list(getattr(server, "_map", {}).values()):
        channel.close()
    server.task_dispatcher.shutdown(timeout=5)


def serve(app: Flask, ready_message: bool = True) -> None:
    """Serve until SIGTERM or SIGINT; then stop the round driver and release
    the data directory."""
    ctx: ServerContext = app.extensions[EXTENSION]
    server = _create(app)
    stop = threading.Event()

    def shutdown(signum: int, frame: FrameType | None) -> None:
        stop.set()
        ctx.events.close()  # event streams end now, not at their next heartbeat
        _close(server)

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    host, port = server.effective_host, server.effective_port
    if ready_message:
        # Tests and scripts wait for this line to know the port is open.
        print(f"fedge serving on http://{host}:{port}", flush=True)
    log.info(
        "serving",
        extra={"fields": {"host": host, "port": port, "data_dir": str(ctx.config.data_dir)}},
    )
    try:
        server.run()
    except (OSError, ValueError):
        if not stop.is_set():
            raise
    finally:
        ctx.close()


class BackgroundServer:
    """The same server on a thread, for embedding (``fedge simulate``, demos)."""

    def __init__(self, app: Flask) -> None:
        self.context: ServerContext = app.extensions[EXTENSION]
        self._server = _create(app)
        self.url = f"http://{self._server.effective_host}:{self._server.effective_port}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fedge-server", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._server.run()
        except (OSError, ValueError):
            if not self._stop.is_set():
                raise

    def stop(self) -> None:
        """Stop serving, then stop the app (round driver, data directory lock)."""
        self._stop.set()
        self.context.events.close()  # event streams end now, not at their next heartbeat
        _close(self._server)
        self._thread.join(timeout=10)
        self.context.close()

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
