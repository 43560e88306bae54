"""How large a request may be, derived from the model the server federates.

An update of a model is exactly ``8 + header + weights`` bytes, and its
header is bounded by the weight spec (see
:func:`fedge.wire.update_codec.max_header_bytes`), so the server knows the
largest honest body before it reads one. The same bound is given to
waitress, which otherwise spools up to 1 GiB of a body to disk before the
application (and its authentication) sees the request.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedge.server.config import ServerConfig
from fedge.wire.update_codec import max_header_bytes
from fedge.wire.weight_spec import ModelSpec

# Device JSON bodies (enrolment, task requests, heartbeats) are a few hundred bytes.
MAX_JSON_BYTES = 64 * 1024


@dataclass(frozen=True)
class RequestLimits:
    max_header_bytes: int
    max_update_bytes: int
    # A predict request's JSON body (a batch of inputs) may be larger than
    # the other JSON bodies: on its route only (fedge.server.http.route_limits;
    # the view sets the request's own bound).
    max_predict_bytes: int = MAX_JSON_BYTES

    @property
    def max_body_bytes(self) -> int:
        """The bound of every other route."""
        return max(self.max_update_bytes, MAX_JSON_BYTES)

    @classmethod
    def for_model(cls, config: ServerConfig, specs: ModelSpec) -> RequestLimits:
        spec = specs
        header = max_header_bytes(spec)
        return cls(
            header, min(config.max_update_bytes, 8 + header + spec.nbytes), config.max_predict_bytes
        )
