"""Errors of the server, each with a stable ``code`` and an HTTP status.

Views and the coordinator's parts raise these; one handler in
:mod:`fedge.server.http.app` turns them into ``{"code": ..., "message": ...}``.
A 4xx is raised before any state changes.
"""

from __future__ import annotations

from fedge.errors import FedgeError


class ServerError(FedgeError):
    """``retry_after`` (whole seconds), when given, says the refusal is for
    now, not for good: it goes out as the ``Retry-After`` header."""

    status = 500
    code = "internal"

    def __init__(
        self, message: str, code: str | None = None, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        if code is not None:
            self.code = code


class BadRequest(ServerError):
    status, code = 400, "bad_request"


class Unauthorized(ServerError):
    status, code = 401, "unauthorized"


class Forbidden(ServerError):
    status, code = 403, "forbidden"


class NotFound(ServerError):
    status, code = 404, "not_found"


class Conflict(ServerError):
    status, code = 409, "conflict"


class PayloadTooLarge(ServerError):
    status, code = 413, "payload_too_large"


class RateLimited(ServerError):
    """A client over its limit or its share (a rate, streams, predictions):
    it may retry after ``retry_after`` seconds."""

    status, code = 429, "rate_limited"

    def __init__(self, message: str, retry_after: int, code: str | None = None) -> None:
        super().__init__(message, code, retry_after)


class Unprocessable(ServerError):
    status, code = 422, "invalid_update"


class InsufficientStorage(ServerError):
    status, code = 507, "insufficient_storage"


class Unavailable(ServerError):
    """The server's share is taken or it cannot answer now; with
    ``retry_after`` when a retry is expected to work."""

    status, code = 503, "unavailable"


class ConfigurationError(FedgeError):
    """A setting that cannot work. Raised while the server starts, never
    while it answers a request, so it is not an HTTP error: ``fedge serve``
    prints it and exits non-zero."""
