"""Device records: enrolment, heartbeats and check-ins, participations.

The records :class:`~fedge.server.storage.store.DeviceRows` takes and
gives; the coordinator decides, the store reads and writes. A device's conditions are
what it last reported; the fair sampler (:mod:`fedge.server.rounds.admission`)
reads ``participations`` (rounds it helped close) and ``last_asked`` (when
it last asked for work).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass


@dataclass(frozen=True)
class Conditions:
    """What a device reports about itself when it checks in."""

    idle: bool = False
    charging: bool = False
    unmetered: bool = False


@dataclass(frozen=True)
class Enrolment:
    device_id: str
    token: str  # shown once; only its hash is stored
    created: bool  # False: a retry of an earlier enrolment with the same request id


@dataclass(frozen=True)
class ActiveDevices:
    """The devices that asked for work lately, as pace steering sees them."""

    count: int
    least_participations: int  # the least-served one's rounds
    least_served: int  # how many have taken part in no more rounds than that


@dataclass(frozen=True)
class SeatStanding:
    """What the fair sampler (:mod:`fedge.server.rounds.admission`) weighs
    a device's request for a seat against."""

    enrolled_at: float  # when the device enrolled
    settled_active: int  # active devices enrolled before the round opened
    # The lower quartile of their participations (of all active devices'
    # while none is settled): a minority of low counts cannot lower it.
    lower_quartile: int


@dataclass(frozen=True)
class Device:
    id: str
    platform: str
    idle: bool
    charging: bool
    unmetered: bool
    participations: int


def hash_token(token: str) -> str:
    """What is stored of a secret (a device token, an enrolment request id)."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_device_credentials() -> tuple[str, str]:
    """A new device's id and its token (256 bits), shown once."""
    return f"d-{secrets.token_hex(8)}", secrets.token_urlsafe(32)
