"""The release policy: a release cut by the server itself every N closed rounds.

``release_every_rounds = N`` (0: off). The round driver calls
:meth:`ReleasePolicy.tick` after each of its steps, so a cut starts from
the driver's thread once the transaction that closed the round has
committed, never from a request. Each new global checkpoint is decided
once: it is cut when the round that made it is the N-th, 2N-th, ...
closed round and no release came from that round yet; it is skipped (and
logged) when a build is running already or there is no live release to
take the model from. After a restart the current checkpoint is decided
again, so a cut lost with the server is made then, and one already made
(or failed) is not made twice.
"""

from __future__ import annotations

import logging

from fedge.server.errors import ServerError
from fedge.server.releases.build.builder import CutRequest, ReleaseBuilder
from fedge.server.rounds.coordinator import Coordinator
from fedge.server.storage.store import Store

log = logging.getLogger("fedge.server")

POLICY_ACTOR = "release policy"


def is_due(closed_rounds: int, every_rounds: int) -> bool:
    """Whether the ``closed_rounds``-th closed round's checkpoint is cut."""
    return every_rounds > 0 and closed_rounds > 0 and closed_rounds % every_rounds == 0


class ReleasePolicy:
    def __init__(self, every_rounds: int, store: Store, builder: ReleaseBuilder) -> None:
        self._every, self._store, self._builder = every_rounds, store, builder
        self._decided: str | None = None  # the last checkpoint decided

    def tick(self, checkpoint: str) -> None:
        """Decide ``checkpoint`` (the current global one) if it is new."""
        if checkpoint == self._decided:
            return
        self._decided = checkpoint
        with self._store.reading() as tx:
            found = tx.checkpoints.made_by(checkpoint)
            round_id = found[0] if found is not None else 0
            closed = tx.rounds.count_closed_through(round_id)
            if round_id == 0 or not is_due(closed, self._every):
                return
            if tx.releases.has_source(f"round:{round_id}"):
                return
        request = CutRequest(
            checkpoint=checkpoint,
            notes=f"cut by the release policy from round {round_id}",
            by=POLICY_ACTOR,
            why=f"release_every_rounds = {self._every}: {closed} rounds closed",
        )
        try:
            self._builder.cut(request)
        except ServerError as exc:  # release_building, no_live_release, stopping
            log.info("release policy: round %d not cut: %s", round_id, exc.message)


def attach_policy(
    every_rounds: int, store: Store, builder: ReleaseBuilder, coordinator: Coordinator
) -> None:
    """Run the policy after every step of the coordinator's round driver (0: off)."""
    if every_rounds > 0:
        policy = ReleasePolicy(every_rounds, store, builder)
        coordinator.after_each_step(lambda: policy.tick(coordinator.current_checkpoint))
