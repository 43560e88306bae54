"""Server-sent events: the :class:`Event` record and its wire format, shared
by the server (which encodes) and devices (which decode).

One event is one SSE message::

    id: 42
    event: round
    data: {"round_id":7,"state":"closed",...}

``data`` is one line of compact JSON. A block with only ``id:`` moves the
reader's position without an event (the server sends one when a stream
starts and ends, so a reconnect resumes past events a filter skipped), and
``retry:`` says how long to wait before reconnecting. The decoder follows
the WHATWG parsing rules (CR, LF or CRLF line ends, comments, multi-line
``data``), so a browser's ``EventSource`` and :class:`SSEDecoder` read the
same stream the same way.
"""

from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass, field
from typing import Any

# A line ends at CRLF, LF or CR.
_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class Event:
    """One event: its id in the server's event log, its type and its data."""

    id: int
    type: str
    data: dict[str, Any]
    created_at: float | None = None  # sent by the long-poll, not in SSE messages

    def encode(self) -> bytes:
        data = json.dumps(self.data, separators=(",", ":"), allow_nan=False)
        return f"id: {self.id}\nevent: {self.type}\ndata: {data}\n\n".encode()

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "data": self.data, "created_at": self.created_at}

    @classmethod
    def from_json(cls, raw: Any) -> Event:
        if not isinstance(raw, dict):
            raise ValueError(f"an event is a JSON object, got {type(raw).__name__}")
        event_id, kind, data = raw.get("id"), raw.get("type"), raw.get("data")
        created = raw.get("created_at")
        if not isinstance(event_id, int) or isinstance(event_id, bool) or event_id < 1:
            raise ValueError(f"an event's id is a positive integer, got {event_id!r}")
        if not isinstance(kind, str) or not isinstance(data, dict):
            raise ValueError("an event has a string type and an object of data")
        if created is not None and not isinstance(created, int | float):
            raise ValueError(f"created_at is a number, got {created!r}")
        return cls(event_id, kind, data, None if created is None else float(created))


def comment(text: str) -> bytes:
    """A comment line (a heartbeat): readers ignore it, proxies see traffic."""
    return f": {text}\n\n".encode()


def position(last_id: int, retry_ms: int | None = None) -> bytes:
    """An ``id:``-only block (no event): the reader's position becomes ``last_id``."""
    retry = f"retry: {retry_ms}\n" if retry_ms is not None else ""
    return f"{retry}id: {last_id}\n\n".encode()


def end(last_id: int, retry_ms: int) -> bytes:
    """The last block of a stream: where to resume, and when."""
    return f"id: {last_id}\nretry: {retry_ms}\n\n".encode()


@dataclass(frozen=True)
class Message:
    """A dispatched SSE message (a block with data)."""

    id: str  # the last event id in force when it was dispatched ('' if none yet)
    event: str
    data: str

    def to_event(self) -> Event:
        """As a fedge event: the id a positive integer, the data a JSON object."""
        if not self.id.isdigit() or int(self.id) < 1:
            raise ValueError(f"a fedge event has a positive integer id, got {self.id!r}")
        data = json.loads(self.data)
        if not isinstance(data, dict):
            raise ValueError("a fedge event's data is a JSON object")
        return Event(int(self.id), self.event, data)


@dataclass
class SSEDecoder:
    """Bytes in, messages out; remembers the last event id (of the last
    whole block) and the retry hint."""

    last_id: str = ""
    retry_ms: int | None = None
    _text: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )
    _buffer: str = ""
    _event: str = ""
    _data: list[str] = field(default_factory=list)
    _started: bool = False
    _after_cr: bool = False
    _id: str = ""  # the id field last read; it becomes last_id when its block ends

    def feed(self, chunk: bytes) -> list[Message]:
        text = self._text.decode(chunk)
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        if self._after_cr and text:
            # A CR that ended the last chunk was a line end; an LF now is its other half.
            text = text.removeprefix("\n")
            self._after_cr = False
        self._buffer += text
        messages: list[Message] = []
        start = 0
        for match in _LINE_END.finditer(self._buffer):
            message = self._line(self._buffer[start : match.start()])
            if message is not None:
                messages.append(message)
            start = match.end()
        self._after_cr = self._buffer[start - 1 : start] == "\r" and start == len(self._buffer)
        self._buffer = self._buffer[start:]
        return messages

    def _line(self, line: str) -> Message | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> Message | None:
        # Only a whole block moves the position: a stream cut inside one
        # resumes before it, so its event is not lost.
        self.last_id = self._id
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return Message(self.last_id, event or "message", "\n".join(data))
