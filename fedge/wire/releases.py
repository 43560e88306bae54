"""Releases on the wire: one codec for the server, the devices and the CLI.

A release is a verified bundle the server keeps under its bundle id, with
an integer version. Three records cross the wire:

* :class:`Release`: what ``GET /v1/releases/current`` gives one device, the
  release meant for it (``channel`` ``live``, or ``canary`` when the device
  is in the candidate's slice) and where its files are;
* :class:`ReleaseRecord`: a release as the registry lists it (state,
  source, who pushed it, the candidate's rollout percent);
* :class:`ReleaseChange`: one entry of the change log (who, when, why).

``from_json`` refuses a record of the wrong shape with :class:`ReleaseWireError`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from fedge.bundle.hashing import is_sha256
from fedge.errors import FedgeError

CHANNELS = ("live", "canary")
STATES = ("building", "failed", "canary", "live", "rolled_back", "retired")


class ReleaseWireError(FedgeError):
    """A release record that is not what the protocol says."""


@dataclass(frozen=True)
class Release:
    """The release a device should run (``files``: the URL path of its bundle)."""

    version: int
    bundle_id: str
    name: str
    channel: str
    files: str

    @property
    def etag_value(self) -> str:
        """What the answer depends on: the version, the channel (a candidate
        promoted keeps its bundle but changes channel) and the bundle id."""
        return f"{self.version}-{self.channel}-{self.bundle_id}"

    @property
    def etag(self) -> str:
        """The ETag the server gives it (quoted), for If-None-Match."""
        return f'"{self.etag_value}"'

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Any) -> Release:
        fields = _object(raw, ("version", "bundle_id", "name", "channel", "files"))
        release = cls(
            version=_int(fields["version"], "version"),
            bundle_id=_text(fields["bundle_id"], "bundle_id"),
            name=_text(fields["name"], "name"),
            channel=_text(fields["channel"], "channel"),
            files=_text(fields["files"], "files"),
        )
        if not is_sha256(release.bundle_id) or release.channel not in CHANNELS:
            raise ReleaseWireError(f"not a release: {raw!r}"[:300])
        return release


@dataclass(frozen=True)
class ReleaseRecord:
    """A release in the registry. ``percent`` is the share of devices a
    candidate reaches (meaningful while it is the ``canary``)."""

    version: int
    bundle_id: str | None
    name: str
    source: str
    state: str
    percent: float
    notes: str
    forced_reason: str | None
    created_at: float
    created_by: str
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Any) -> ReleaseRecord:
        fields = _object(raw, tuple(cls.__dataclass_fields__))
        try:
            return cls(**fields)
        except TypeError as exc:
            raise ReleaseWireError(f"not a release record: {exc}") from exc


@dataclass(frozen=True)
class Rollout:
    """Which release is live, which (if any) is the candidate, and its percent."""

    live: int | None
    candidate: int | None
    percent: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ReleaseChange:
    id: int
    at: float
    actor: str
    action: str
    version: int | None
    why: str | None
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _object(raw: Any, names: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(raw, dict) or any(name not in raw for name in names):
        raise ReleaseWireError(f"expected an object with {', '.join(names)}; got {raw!r}"[:300])
    return {name: raw[name] for name in names}


def _int(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ReleaseWireError(f"{name} must be an integer; got {value!r}")
    return value


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise ReleaseWireError(f"{name} must be a string; got {value!r}")
    return value
