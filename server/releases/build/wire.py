"""What crosses between the server and its release worker, one JSON line each.

The server writes one :class:`BuildJob` line on the worker's stdin (and
keeps stdin open: its end tells the worker the server has gone); the
worker writes :class:`BuildProgress` lines on its stdout, the last one
``done`` or ``error``. Both sides use this module, so the two ends of the
pipe cannot drift apart; ``from_line`` refuses anything else with
:class:`BuildWireError`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

from fedge.errors import FedgeError

STARTED = "started"
DONE = "done"
ERROR = "error"


class BuildWireError(FedgeError):
    """A line that is not the record the protocol says."""


@dataclass(frozen=True)
class BuildJob:
    """One build: convert the checkpoint file with the live bundle's model
    into a new bundle at ``out`` (which the server created for it)."""

    live_bundle: str
    checkpoint: str
    out: str
    version: str  # the new bundle's manifest version
    parent_pid: int  # the worker ends when this process has gone

    def to_line(self) -> str:
        return _line(asdict(self))

    @classmethod
    def from_line(cls, line: str) -> BuildJob:
        return cls(**_typed(cls, line))


@dataclass(frozen=True)
class BuildProgress:
    """Where a build is: a stage (``started``, a conversion target, ``done``,
    ``error``...), what happens there, and when (Unix time)."""

    stage: str
    message: str
    at: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def to_line(self) -> str:
        return _line(self.to_json())

    @classmethod
    def from_line(cls, line: str) -> BuildProgress:
        return cls(**_typed(cls, line))


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":")) + "\n"  # json escapes newlines


_TYPES: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "float": (int, float)}


def _typed(cls: type, line: str) -> dict[str, Any]:
    """The fields of ``cls`` from a JSON line, each of its declared type."""
    try:
        raw = json.loads(line)
    except ValueError as exc:
        raise BuildWireError(f"not a JSON line: {line[:200]!r}") from exc
    names = [f.name for f in fields(cls)]
    if not isinstance(raw, dict) or sorted(raw) != sorted(names):
        raise BuildWireError(f"expected an object with {', '.join(names)}; got {line[:200]!r}")
    for field in fields(cls):
        value = raw[field.name]
        if isinstance(value, bool) or not isinstance(value, _TYPES[str(field.type)]):
            raise BuildWireError(f"{field.name} must be a {field.type}; got {value!r}"[:300])
    return raw
