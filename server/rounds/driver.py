"""The one background thread that moves rounds along.

Requests never close, abandon or open rounds: they only record what
devices send. This thread does the rest, every ``tick_s`` or at once when
woken (an upload reached the round's target, an admin ended the round):
it closes a round whose target or deadline has come, aggregates it, and
opens the next one. A close that fails for a reason that may pass (a full
disk, say) is retried with exponential backoff; meanwhile every request
goes on being answered, and the failure is visible in the round, the
metrics and ``/healthz``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("fedge.server")

BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 60.0


@dataclass(frozen=True)
class CloseFailure:
    """Why the closing round has not closed yet, and when it is tried again."""

    round_id: int
    attempts: int
    error: str
    retry_at: float

    def to_json(self) -> dict[str, object]:
        return {
            "round_id": self.round_id,
            "attempts": self.attempts,
            "error": self.error,
            "retry_at": self.retry_at,
        }


def backoff_s(attempts: int) -> float:
    """Seconds to wait after ``attempts`` failed tries: 0.5, 1, 2, ... 60."""
    return float(min(BACKOFF_MAX_S, BACKOFF_START_S * 2 ** max(attempts - 1, 0)))


class RoundDriver:
    """Calls ``step`` every ``interval_s`` seconds, or sooner when woken.

    ``step`` handles its own expected failures; anything it lets through is
    logged and the thread keeps going, so one bad tick never stops rounds.
    """

    def __init__(self, step: Callable[[], None], interval_s: float) -> None:
        self._step = step
        self._interval_s = interval_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fedge-rounds", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self._step()
            except Exception:
                log.exception("round driver step failed")
