"""A link that drops for good after some requests, over real HTTP: for the
tests and the benchmark of resumed downloads.

Test scaffolding, not part of the installed package.
"""

from __future__ import annotations

from typing import Any

from fedge.client_sim.device.transport import HttpTransport, Reply, TransportError


class NetworkGoneAfter(HttpTransport):
    """Real HTTP that stops after ``requests`` requests, as a link that drops
    for good: every later request fails as no answer would."""

    def __init__(self, url: str, requests_allowed: int) -> None:
        super().__init__(url)
        self.left = requests_allowed
        self.ranges: list[str] = []

    def request(self, method: str, path: str, **kwargs: Any) -> Reply:
        if self.left <= 0:
            raise TransportError(f"{method} {path}: the network is gone")
        self.left -= 1
        headers = kwargs.get("headers") or {}
        if "Range" in headers:
            self.ranges.append(f"{path.rsplit('/', 1)[-1]} {headers['Range']}")
        return super().request(method, path, **kwargs)
