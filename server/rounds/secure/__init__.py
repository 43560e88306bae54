"""Secure rounds (``[secure_aggregation] enabled``): the SecAgg+ stages of
:mod:`fedge.secagg` as a round's stages, timed, and the unmasked mean handed
to the round's running sum. Public API: :class:`SecureRounds`."""

from fedge.server.rounds.secure.rounds import SecureRounds

__all__ = ["SecureRounds"]
