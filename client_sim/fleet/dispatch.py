"""One pass of a round's devices over a bounded thread pool, which ends
early once the server says the round is full.

Pace steering (:mod:`.pacing`) brings about two devices per seat to each
round. Once every seat of the round is taken the server refuses the rest
(``round_full``) and tells each when to come back: each refusal a request
and a server transaction that changes nothing about the round. So a pass
starts its devices a few at a time (as many as the pool runs at once), and
once one is refused as ``round_full`` it starts no more: the devices it had
not started yet are ``deferred`` (they had not asked; they ask in the next
round, :func:`fedge.client_sim.fleet.pacing.next_wakeup`). The devices
already asking finish their step as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait

from fedge.client_sim.device.simulated import RoundOutcome

FULL = "round_full"
DEFERRED = "deferred"


def until_full(
    pool: Executor, step: Callable[[int], RoundOutcome], order: list[int], in_flight: int
) -> Iterator[RoundOutcome]:
    """``step`` each device of ``order`` on ``pool``, at most ``in_flight``
    at once and in that order, until an outcome is ``round_full``; then the
    devices not started are ``deferred``. One outcome per device, each as it
    comes (not necessarily in ``order``)."""
    waiting = iter(order)
    running: set[Future[RoundOutcome]] = set()
    full = False

    def start_more() -> None:
        while not full and len(running) < max(1, in_flight):
            index = next(waiting, None)
            if index is None:
                return
            running.add(pool.submit(step, index))

    try:
        start_more()
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                running.discard(future)
                outcome = future.result()
                full = full or outcome.status == FULL
                yield outcome
            start_more()
    finally:
        # Stopped early (an error, say): the started steps still finish, so
        # no device runs two steps at once in the next pass.
        wait(running)
    yield from (RoundOutcome(index, DEFERRED) for index in waiting)
