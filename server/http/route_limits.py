"""A larger request body for a few routes only, enforced by waitress itself.

Waitress bounds every body with one ``max_request_body_size`` and spools a
body up to that size before the application sees the request. The server
sets it to the largest update (see :mod:`fedge.server.http.request_limits`), so
a device cannot make it spool more. A release upload (``POST
/v1/releases``, admin only) is a whole bundle, far larger: this parser
looks at the request line once the headers are in and, for the routes
named, reads the body under their own bound instead. Every other route
keeps the server's bound; the app checks the admin token and the route's
bound again before it reads the body.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, ClassVar

from waitress.parser import HTTPRequestParser

Route = tuple[str, str]  # (method, path)


class RouteLimitedParser(HTTPRequestParser):  # type: ignore[misc]
    routes: ClassVar[Mapping[Route, Any]] = {}  # route -> waitress Adjustments

    def received(self, data: bytes) -> int:
        consumed = int(super().received(data))
        if self.error is not None and self.completed:
            # Refused (413, 431, 400): the rest of this read is the body or
            # headers it refused, not a next request (see
            # fedge.server.http.connections, which discards what follows).
            return len(data)
        return consumed

    def parse_header(self, header_plus: bytes) -> None:
        super().parse_header(header_plus)
        adjustments = self.routes.get((self.command, self.path))
        if adjustments is not None:
            # Read after this returns: the Content-Length check, and the
            # running total of a chunked body.
            self.adj = adjustments


def with_route_limits(channel_class: type, adjustments: Any, limits: Mapping[Route, int]) -> type:
    """``channel_class`` whose requests to the routes in ``limits`` may
    carry bodies up to their bound (``adjustments``: the server's)."""
    routes = {}
    for route, max_body in limits.items():
        own = copy.copy(adjustments)
        own.max_request_body_size = max_body
        routes[route] = own
    parser = type("RouteLimitedParser", (RouteLimitedParser,), {"routes": routes})
    return type(channel_class.__name__, (channel_class,), {"parser_class": parser})
