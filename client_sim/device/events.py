"""A device's view of the server's events: an SSE subscriber and the long-poll.

:class:`EventSubscriber` is iterated for :class:`~fedge.wire.sse.Event` records.
It reconnects by itself, sending ``Last-Event-ID``, when a stream ends (the
server ends each after a while) or the connection drops, so the caller
sees every event once, in order; :meth:`EventSubscriber.stop` ends it from
another thread. :func:`poll_events` is the fallback for networks that
cannot hold a stream open::

    subscriber = EventSubscriber(url, types=["release"])
    for event in subscriber:  # on a thread; subscriber.stop() ends it
        ...
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import requests

from fedge.errors import FedgeError
from fedge.wire.sse import Event, SSEDecoder

__all__ = ["Event", "EventSubscriber", "EventsRefused", "PollResult", "poll_events"]

log = logging.getLogger("fedge.client_sim")

CONNECT_TIMEOUT_S = 10.0


class EventsRefused(FedgeError):
    """The server answered with an error instead of events."""

    def __init__(self, status: int, code: str, message: str, retry_after_s: float | None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class PollResult:
    events: list[Event]
    last_id: int  # where the next poll starts (past events a filter skipped)


def poll_events(
    url: str,
    after: int | None,
    timeout: float,
    types: Sequence[str] | None = None,
    session: requests.Session | None = None,
    token: str | None = None,
) -> PollResult:
    """Events after ``after`` (``None``: from now on), waiting up to
    ``timeout`` seconds (at most 30) for one when there are none yet.
    ``token`` (a device's): the wait counts against the device, which may
    use the slots the server reserves for devices, not against the address."""
    params = {"timeout": f"{timeout:g}"}
    if after is not None:
        params["after"] = str(after)
    if types:
        params["types"] = ",".join(types)
    response = (session or requests).get(
        f"{url.rstrip('/')}/v1/events/poll",
        params=params,
        headers=_auth(token),
        timeout=timeout + CONNECT_TIMEOUT_S,
    )
    if response.status_code != 200:
        raise _refusal(response)
    body = response.json()
    return PollResult([Event.from_json(e) for e in body["events"]], int(body["last_id"]))


class EventSubscriber:
    """Server-sent events from ``GET /v1/events``, across reconnections.

    ``after``: start after this event id (``None``: with events from now
    on). ``read_timeout_s``: a connection silent for this long (the server
    sends a heartbeat every 15 s) counts as dropped. ``token`` (a device's):
    the stream counts against the device, not its address (see
    :func:`poll_events`). A refusal for now (429 or 503 ``too_many_streams``)
    is retried after its ``Retry-After``.
    """

    def __init__(
        self,
        url: str,
        *,
        after: int | None = None,
        types: Sequence[str] | None = None,
        read_timeout_s: float = 60.0,
        max_backoff_s: float = 30.0,
        token: str | None = None,
    ) -> None:
        self._url = f"{url.rstrip('/')}/v1/events"
        self._token = token
        self._params = {"types": ",".join(types)} if types else {}
        self._read_timeout_s = read_timeout_s
        self._max_backoff_s = max_backoff_s
        self._last_id = after
        self._retry_s = 1.0  # until the server says otherwise
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._response: requests.Response | None = None
        self.connections = 0  # streams opened so far

    @property
    def last_event_id(self) -> int | None:
        """The id a reconnect resumes after."""
        return self._last_id

    def stop(self) -> None:
        """End the iteration (from any thread): a read in progress returns now."""
        self._stopped.set()
        with self._lock:
            if self._response is not None:
                _interrupt(self._response)

    def __iter__(self) -> Iterator[Event]:
        failures = 0
        with requests.Session() as session:
            while not self._stopped.is_set():
                try:
                    yield from self._stream(session)
                    failures, delay = 0, self._retry_s
                except EventsRefused as exc:
                    if exc.status not in (429, 503):
                        raise  # a bad request stays bad
                    delay = exc.retry_after_s or self._retry_s
                    log.info("event stream refused (%s); retrying in %.1f s", exc.code, delay)
                except requests.RequestException as exc:
                    if self._stopped.is_set():
                        break
                    failures += 1
                    delay = min(self._retry_s * 2 ** (failures - 1), self._max_backoff_s)
                    log.info("event stream dropped (%s); reconnecting in %.1f s", exc, delay)
                self._stopped.wait(delay)

    def _stream(self, session: requests.Session) -> Iterator[Event]:
        """One connection's events, until the server ends the stream."""
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache", **_auth(self._token)}
        if self._last_id is not None:
            headers["Last-Event-ID"] = str(self._last_id)
        response = session.get(
            self._url,
            params=self._params,
            headers=headers,
            stream=True,
            timeout=(CONNECT_TIMEOUT_S, self._read_timeout_s),
        )
        with self._lock:
            self._response = response
        try:
            if self._stopped.is_set():
                return
            if response.status_code != 200:
                raise _refusal(response)
            self.connections += 1
            decoder = SSEDecoder()
            for chunk in response.iter_content(chunk_size=None):
                for message in decoder.feed(chunk):
                    event = message.to_event()
                    self._last_id = event.id
                    yield event
                if decoder.last_id.isdigit():  # position blocks move it too
                    self._last_id = int(decoder.last_id)
                if decoder.retry_ms is not None:
                    self._retry_s = decoder.retry_ms / 1000
        finally:
            with self._lock:
                self._response = None
            response.close()


def _auth(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


def _interrupt(response: requests.Response) -> None:
    """Shut the response's socket down, so that a read blocked on it returns
    (closing it would not). Through a duplicate of its descriptor: the
    caller holds the lock that keeps the response open meanwhile."""
    try:
        duplicate = socket.socket(fileno=os.dup(response.raw.fileno()))
    except (OSError, ValueError, AttributeError):  # read to its end, or closed
        return
    with duplicate, contextlib.suppress(OSError):
        duplicate.shutdown(socket.SHUT_RDWR)


def _refusal(response: requests.Response) -> EventsRefused:
    try:
        body = response.json()
        code, message = str(body["code"]), str(body["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", response.text[:200]
    retry_after = response.headers.get("Retry-After", "")
    return EventsRefused(
        response.status_code,
        code,
        message,
        float(retry_after) if retry_after.isdigit() else None,
    )
