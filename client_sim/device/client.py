"""The device side of the round protocol, with retries and backoff.

Retries only what may succeed later: no answer at all, 5xx, 429, never
sooner than the server's ``Retry-After`` (one asking for longer than
``RetryPolicy.max_retry_after_s`` is raised at once). A 4xx is final (the
server changed nothing); the caller sees it as :class:`ProtocolError` with
the server's stable code. Uploads are safe to
retry because the server makes them idempotent per device and round.
"""

from __future__ import annotations

import hashlib
import random
import secrets
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any

from fedge.client_sim.device.transport import Reply, Transport, TransportError
from fedge.wire.update_codec import Checkpoint, decode_checkpoint

# The decoded checkpoints of every client in this process, by id (the
# sha256 of their bytes, so one id is one content): a fleet's thousands of
# simulated devices each download the round's checkpoint, as a phone would,
# but share one decoded copy of it instead of holding one each. Weak: a
# checkpoint no client holds any more is freed.
_DECODED: weakref.WeakValueDictionary[str, Checkpoint] = weakref.WeakValueDictionary()
_DECODED_LOCK = threading.Lock()


def _shared_decoded(checkpoint_id: str, body: bytes) -> Checkpoint:
    with _DECODED_LOCK:
        checkpoint = _DECODED.get(checkpoint_id)
        if checkpoint is None:
            checkpoint = _DECODED[checkpoint_id] = decode_checkpoint(body)
        return checkpoint


class ProtocolError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    base_delay_s: float = 0.05
    max_delay_s: float = 2.0
    # A refusal whose Retry-After asks for longer than this is raised at
    # once rather than waited out (a device's thread is not held for an hour).
    max_retry_after_s: float = 30.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Exponential backoff with full jitter."""
        return rng.uniform(0, min(self.max_delay_s, self.base_delay_s * 2**attempt))


class FedgeClient:
    def __init__(
        self, transport: Transport, retry: RetryPolicy = RetryPolicy(), seed: int = 0
    ) -> None:
        self.transport = transport
        self.retry = retry
        self.device_id = ""
        self.token = ""
        self._rng = random.Random(seed)
        self._checkpoints: dict[str, Checkpoint] = {}
        self.bytes_up = 0
        self.bytes_down = 0
        self.retries = 0

    def enrol(self, platform: str = "sim", enrolment_key: str | None = None) -> str:
        body: dict[str, Any] = {"platform": platform}
        if enrolment_key:
            body["enrolment_key"] = enrolment_key
        # One secret per enrolment: a retry after a lost answer is the same device.
        body["request_id"] = secrets.token_urlsafe(24)
        reply = self._call("POST", "/v1/devices", json_body=body, token=None)
        self.device_id, self.token = reply.json()["device_id"], reply.json()["token"]
        return self.device_id

    def task(self, idle: bool, charging: bool, unmetered: bool) -> dict[str, Any]:
        reply = self._call(
            "POST",
            "/v1/tasks",
            json_body={"idle": idle, "charging": charging, "unmetered": unmetered},
            token=self.token,
        )
        answer: dict[str, Any] = reply.json()
        return answer

    def checkpoint(self, checkpoint_id: str) -> Checkpoint:
        if checkpoint_id not in self._checkpoints:
            reply = self._call("GET", f"/v1/checkpoints/{checkpoint_id}", token=self.token)
            # A checkpoint's id is the sha256 of its bytes: anything else was
            # corrupted on the way or on the server's disk, and is not trained on.
            if hashlib.sha256(reply.body).hexdigest() != checkpoint_id:
                raise ProtocolError(
                    reply.status,
                    "checkpoint_mismatch",
                    f"checkpoint {checkpoint_id[:12]}: bytes do not match its id",
                )
            self._checkpoints = {checkpoint_id: _shared_decoded(checkpoint_id, reply.body)}
        return self._checkpoints[checkpoint_id]

    def get(self, path: str) -> bytes:
        """The body of a GET of ``path`` with this device's token (retried
        as the module doc says; a 4xx is a :class:`ProtocolError`)."""
        return self._call("GET", path, token=self.token).body

    def conditional_get(self, path: str, etag: str | None) -> Reply:
        """A GET of ``path`` with this device's token and ``If-None-Match:
        etag`` (when given): the reply, a 304 included (retried, and a 4xx
        raised, as the module doc says)."""
        headers = {"If-None-Match": etag} if etag is not None else None
        return self._call("GET", path, token=self.token, headers=headers)

    def get_range(self, path: str, start: int, end: int) -> Reply:
        """Bytes ``start..end`` (inclusive) of ``path``: a 206, or a 200 with
        the whole body from a server that ignores Range (retried, and a 4xx
        raised, as the module doc says)."""
        return self._call("GET", path, token=self.token, headers={"Range": f"bytes={start}-{end}"})

    def post_json(self, path: str, body: Any) -> Reply:
        """A POST of ``body`` as JSON with this device's token (retried, and
        a 4xx raised, as the module doc says)."""
        return self._call("POST", path, json_body=body, token=self.token)

    def post_bytes(self, path: str, data: bytes) -> Reply:
        """A POST of ``data`` as application/octet-stream with this device's
        token (retried, and a 4xx raised, as the module doc says)."""
        reply = self._call("POST", path, data=data, token=self.token)
        self.bytes_up += len(data)
        return reply

    def upload(self, round_id: int, data: bytes) -> dict[str, Any]:
        reply = self._call("POST", f"/v1/rounds/{round_id}/updates", data=data, token=self.token)
        self.bytes_up += len(data)
        receipt: dict[str, Any] = reply.json()
        return receipt

    def _call(
        self,
        method: str,
        path: str,
        *,
        token: str | None,
        json_body: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """One request, retried as the module doc says. ``token`` is sent as
        the bearer token, ``None`` sends none (enrolment); there is no default,
        so every call says which credentials it uses."""
        for attempt in range(self.retry.attempts):
            wait = self.retry.delay(attempt, self._rng)
            try:
                reply = self.transport.request(
                    method, path, token=token, json_body=json_body, data=data, headers=headers
                )
            except TransportError:
                if attempt == self.retry.attempts - 1:
                    raise
            else:
                self.bytes_down += len(reply.body)
                if reply.status < 400:
                    return reply
                if reply.status < 500 and reply.status != 429:
                    raise _refusal(reply, "error")
                later = reply.retry_after_s or 0.0
                if attempt == self.retry.attempts - 1 or later > self.retry.max_retry_after_s:
                    raise _refusal(reply, "server_error")
                wait = max(wait, later)  # no sooner than the server asked
            self.retries += 1
            time.sleep(wait)
        raise AssertionError("unreachable")  # the loop returns or raises


def _refusal(reply: Reply, default_code: str) -> ProtocolError:
    """The server's ``{"code", "message"}`` when it sent JSON, else its first bytes."""
    body = reply.json() if "json" in reply.content_type else None
    if isinstance(body, dict):
        return ProtocolError(
            reply.status, str(body.get("code", default_code)), str(body.get("message", ""))
        )
    return ProtocolError(reply.status, default_code, reply.body[:200].decode(errors="replace"))
