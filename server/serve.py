"""Run the app under waitress (a production WSGI server), with a ticker
thread that closes rounds at their deadline even when no request comes."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

from flask import Flask

from fedge.server.app import EXTENSION, ServerContext

log = logging.getLogger("fedge.server")


def _ticker(ctx: ServerContext, stop: threading.Event) -> None:
    while not stop.wait(ctx.config.tick_s):
        try:
            ctx.coordinator.tick()
        except Exception:  # keep ticking; the error is logged with its traceback
            log.exception("round tick failed")


def _close(server: Any) -> None:
    """Stop listening and drop idle keep-alive connections, so run() returns."""
    server.close()
    for channel in list(getattr(server, "_map", {}).values()):
        channel.close()
    server.task_dispatcher.shutdown(timeout=5)


def serve(app: Flask, ready_message: bool = True) -> None:
    """Serve until SIGTERM or SIGINT; the ticker stops with the server."""
    from waitress.server import create_server

    ctx: ServerContext = app.extensions[EXTENSION]
    server: Any = create_server(
        app,
        host=ctx.config.host,
        port=ctx.config.port,
        threads=ctx.config.threads,
        connection_limit=ctx.config.connection_limit,
        asyncore_use_poll=True,  # select() stops at 1024 descriptors
        ident="fedge",
    )
    stop = threading.Event()
    ticker = threading.Thread(target=_ticker, args=(ctx, stop), name="fedge-ticker", daemon=True)
    ticker.start()

    def shutdown(signum: int, frame: FrameType | None) -> None:
        stop.set()
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
        stop.set()
        ticker.join(timeout=5)


class BackgroundServer:
    """The same server on a thread, for embedding (``fedge simulate``, demos)."""

    def __init__(self, app: Flask) -> None:
        from waitress.server import create_server

        self.context: ServerContext = app.extensions[EXTENSION]
        config = self.context.config
        self._server: Any = create_server(
            app,
            host=config.host,
            port=config.port,
            threads=config.threads,
            connection_limit=config.connection_limit,
            asyncore_use_poll=True,
            ident="fedge",
        )
        self.url = f"http://{self._server.effective_host}:{self._server.effective_port}"
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, name="fedge-server", daemon=True),
            threading.Thread(
                target=_ticker, args=(self.context, self._stop), name="fedge-ticker", daemon=True
            ),
        ]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        try:
            self._server.run()
        except (OSError, ValueError):
            if not self._stop.is_set():
                raise

    def stop(self) -> None:
        self._stop.set()
        _close(self._server)
        for thread in self._threads:
            thread.join(timeout=10)

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
