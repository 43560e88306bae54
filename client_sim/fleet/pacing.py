"""When each of a fleet's devices asks for work: on the server's advice,
waking on round events rather than on timers.

A device asks for a task when the round it was told to come back in has
opened (:class:`DevicePacing`): after contributing, the next round; after
a refusal, the refusal's ``retry_round`` (the server spreads refused devices
over the coming rounds, see :func:`fedge.server.rounds.admission.paced_round`).
So each round only the devices the server asked for come, and the rest of
a large fleet costs nothing. Within a round a refused device's
``retry_after_s`` still counts, so a round that is not filling (the fair
sampler waits for half time, say) gets its devices back.

Between passes over the due devices the fleet does not sleep: it waits on
the server's round events (:class:`RoundWatch`, the event long-poll) until
the round moves or the first such timer comes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import requests

from fedge.client_sim.device.events import EventsRefused, poll_events
from fedge.client_sim.device.simulated import RoundOutcome

# The server waits at most this long in one long-poll.
MAX_WAIT_S = 30.0
# Seconds to wait within a round after a refusal that gave none.
DEFAULT_RETRY_S = 1.0


@dataclass(frozen=True)
class Wakeup:
    """Ask once round ``round_id`` is open, or, while round ``timer_round``
    is still the one in progress, at ``at`` (``time.monotonic``)."""

    round_id: int = 0
    timer_round: int | None = None
    at: float = math.inf


class DevicePacing:
    """The next wake-up of each of ``n`` devices (all due at first)."""

    def __init__(self, n: int) -> None:
        self._wakeups = [Wakeup() for _ in range(n)]

    def due(self, round_id: int, now: float) -> list[int]:
        """The devices that should ask for work in round ``round_id`` now."""
        return [
            index
            for index, wake in enumerate(self._wakeups)
            if wake.round_id <= round_id or (wake.timer_round == round_id and wake.at <= now)
        ]

    def next_timer(self, round_id: int) -> float | None:
        """The earliest timer that runs within round ``round_id``, if any."""
        timers = [w.at for w in self._wakeups if w.timer_round == round_id]
        return min(timers) if timers else None

    def record(self, outcome: RoundOutcome, round_id: int, now: float) -> None:
        """What ``outcome`` of a step in round ``round_id`` (at ``now``) means
        for the device's next request."""
        self._wakeups[outcome.device] = next_wakeup(outcome, round_id, now)


def next_wakeup(outcome: RoundOutcome, round_id: int, now: float) -> Wakeup:
    if outcome.status == "contributed" and outcome.round_id is not None:
        return Wakeup(outcome.round_id + 1)
    if outcome.status == "next_round" and outcome.round_id is not None:
        return Wakeup(outcome.round_id)  # it holds a seat there
    if outcome.retry_round is not None or outcome.retry_after_s is not None:  # a refusal
        retry_s = DEFAULT_RETRY_S if outcome.retry_after_s is None else outcome.retry_after_s
        retry_round = round_id + 1 if outcome.retry_round is None else outcome.retry_round
        return Wakeup(retry_round, round_id, now + retry_s)
    if outcome.status == "error":
        # No answer (the server busy or unreachable): it may hold a seat in
        # this round, so it tries again within it, and else in the next one.
        return Wakeup(round_id + 1, round_id, now + DEFAULT_RETRY_S)
    # Offline, dropped out, its upload refused: the next round.
    return Wakeup(round_id + 1)


class RoundWatch:
    """Waits for the server's next round event (opened, closing, closed...)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._session = requests.Session()
        self._cursor = poll_events(url, None, 0, ["round"], self._session).last_id

    def wait(self, timeout_s: float) -> None:
        """Return at the next round event after the last one seen, or after
        ``timeout_s`` seconds (at most :data:`MAX_WAIT_S`)."""
        timeout_s = max(0.0, min(MAX_WAIT_S, timeout_s))
        try:
            result = poll_events(self._url, self._cursor, timeout_s, ["round"], self._session)
        except EventsRefused as exc:  # every waiting slot is taken
            time.sleep(min(timeout_s, exc.retry_after_s or DEFAULT_RETRY_S))
            return
        self._cursor = result.last_id

    def close(self) -> None:
        self._session.close()


def run_round_passes(
    round_id: int,
    pacing: DevicePacing,
    watch: RoundWatch,
    step: Callable[[list[int]], Iterable[RoundOutcome]],
    round_state: Callable[[], dict[str, Any]],
) -> tuple[list[RoundOutcome], dict[str, Any]]:
    """Passes over the devices due in round ``round_id`` (``step`` runs them,
    on threads or Ray actors) until the round ends; between passes, wait on
    the round events or the first retry timer. The outcomes, and the round
    as the server shows it at the end."""
    outcomes: list[RoundOutcome] = []
    while True:
        for outcome in step(pacing.due(round_id, time.monotonic())):
            pacing.record(outcome, round_id, time.monotonic())
            outcomes.append(outcome)
        state = round_state()
        if state["state"] not in ("open", "closing"):
            return outcomes, state
        if not pacing.due(round_id, time.monotonic()):
            timer = pacing.next_timer(round_id)
            watch.wait(MAX_WAIT_S if timer is None else timer - time.monotonic())
