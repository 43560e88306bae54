"""Whether a device that asks for work may have it, and if not, why:
decisions on plain values (no database, no Flask), so each rule can be
read and tested alone. :mod:`fedge.server.rounds.selection` gathers the values.

The refusals, in the order they are checked:

=======================  ==================================================
``conditions``           not idle / charging / unmetered as rounds require
``no_open_round``        no round is open (the last one is still closing)
``round_full``           every seat is taken: ``target x over_selection``
``fairness_wait``        the fair sampler (new devices after settled ones,
                         then the least served): see :func:`seat_refusal`
``already_contributed``  its update for this round is in
=======================  ==================================================

A device that already holds a seat in the round keeps it: only the first,
second and last apply to it.

Besides ``retry_after_s`` (when to ask again at the earliest, for a client
that only has a clock), a device refused a seat is told ``retry_round``:
the round worth asking in (:func:`paced_round`). A device that follows the
round events sleeps until that round opens, so a fleet of any size costs
the server about the same number of check-ins per round.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from fedge.server.round_config import RoundConfig
from fedge.server.storage.devices import Conditions

# A device counts as active (for the fair sampler) while it has asked for
# work within this many round deadlines.
ACTIVE_DEADLINES = 4
# Pace steering (see paced_round): devices asked to come back per seat and round.
PACE = 2


@dataclass(frozen=True)
class Refusal:
    reason: str
    retry_after_s: float


CONDITIONS = Refusal("conditions", 30.0)
NO_OPEN_ROUND = Refusal("no_open_round", 1.0)
ALREADY_CONTRIBUTED = Refusal("already_contributed", 2.0)


@dataclass(frozen=True)
class Seats:
    """An open round's seats at the moment a device asks."""

    taken: int
    slots: int
    # The lower quartile of the settled active devices' participations
    # (see seat_refusal), and how many settled devices are active.
    least_participations: int
    opened_at: float
    deadline_at: float
    settled_active: int = 0

    @property
    def half_time(self) -> float:
        return self.opened_at + (self.deadline_at - self.opened_at) / 2


def conditions_refusal(rounds: RoundConfig, conditions: Conditions) -> Refusal | None:
    if (
        (rounds.require_idle and not conditions.idle)
        or (rounds.require_charging and not conditions.charging)
        or (rounds.require_unmetered and not conditions.unmetered)
    ):
        return CONDITIONS
    return None


def seat_refusal(
    seats: Seats, participations: int, now: float, enrolled_at: float = 0.0
) -> Refusal | None:
    """``None`` when a device that has taken part in ``participations``
    rounds (enrolled at ``enrolled_at``) may take a seat.

    The fair sampler, until the round has used half its time (then anyone
    may join a round that has not filled):

    * a device is *settled* once it enrolled before the round opened. A
      new device waits while any settled device is active: being new never
      wins a seat (a fleet of new identities made for one round finds the
      seats taken by the devices that were there before);
    * a settled device waits while it has taken part in more rounds than
      the lower quartile of the settled active devices. A quartile, not the
      least: identities that kept their count low (idle, or never seated)
      are at most as favoured as the least-served quarter of the fleet,
      and fewer than a quarter of the devices cannot move it.

    Whoever is refused is told to come back within the round (0.5 to 5
    seconds).
    """
    retry = max(0.5, min(5.0, seats.deadline_at - now))
    if seats.taken >= seats.slots:
        return Refusal("round_full", retry)
    if now >= seats.half_time:
        return None
    new = enrolled_at >= seats.opened_at
    if (new and seats.settled_active > 0) or participations > seats.least_participations:
        return Refusal("fairness_wait", retry)
    return None


def paced_round(round_id: int, device_id: str, competing: int, slots: int) -> int:
    """The round a device refused in ``round_id`` should ask in next (pace
    steering): the refused are spread evenly over the coming rounds, each
    device by a stable hash, so that about ``PACE`` devices per seat ask
    in each round whatever the size of the fleet, instead of every active
    device in every round. With ``competing`` devices for ``slots`` seats
    a device waits ``competing / (PACE * slots)`` rounds on average (at
    least 1).
    """
    mean_wait = competing / (PACE * max(slots, 1))
    spread = max(1, round(2 * mean_wait - 1))
    digest = hashlib.blake2b(f"{device_id}:{round_id}".encode(), digest_size=8).digest()
    return round_id + 1 + int.from_bytes(digest, "big") % spread


def active_since(rounds: RoundConfig, now: float) -> float:
    """The time after which a device that asked for work counts as active."""
    return now - ACTIVE_DEADLINES * rounds.deadline_s
