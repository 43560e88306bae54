"""How many updates close a fleet's rounds: ``fedge simulate --per-round``.

The embedded server takes the fleet's: ``--per-round``, or by default
:data:`DEFAULT_PER_ROUND` capped at the fleet's size, so a small fleet
(the README's 8 devices) runs without options. A running server
(``--server``) has its own (``fedge serve --per-round``) and no route to
change it, so the fleet reads it from the server's public round info and
uses it: a different ``--per-round`` is reported as not used, and a target
larger than the fleet is reported too, since each round then closes at its
deadline (5 rounds of 60 s for 8 devices against the default 10) unless
devices from elsewhere (other fleets, browsers, phones) fill it.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedge.errors import ConfigError

DEFAULT_PER_ROUND = 10


@dataclass(frozen=True)
class RoundTarget:
    """The updates that close a round, and what the user should be told
    about how it was chosen (None: nothing to say)."""

    per_round: int
    notice: str | None = None


def fleet_round_target(per_round: int | None, devices: int) -> RoundTarget:
    """The embedded server's target for a fleet of ``devices``."""
    if per_round is None:
        return RoundTarget(min(DEFAULT_PER_ROUND, devices))
    if per_round > devices:
        raise ConfigError(
            f"{per_round} per round > {devices} devices: give --per-round {devices} or "
            f"fewer, or --devices {per_round} or more"
        )
    return RoundTarget(per_round)


def server_round_target(
    per_round: int | None, server_target: int, devices: int, url: str
) -> RoundTarget:
    """The running server's target (``server_target``), checked against
    the fleet's ``devices`` and the user's ``per_round``."""
    notices = []
    if server_target > devices:
        notices.append(
            f"the server at {url} closes a round at {server_target} updates, more than the "
            f"fleet's {devices} devices: each round waits for its deadline unless other "
            f"devices take part (give --devices {server_target} or more, or restart the "
            f"server with fedge serve --per-round {devices})"
        )
    if per_round is not None and per_round != server_target:
        notices.append(
            f"the server at {url} closes a round at {server_target} updates; "
            f"--per-round {per_round} is not used (set it on the server: "
            f"fedge serve --per-round {per_round})"
        )
    notice = "; ".join(notices) or None
    return RoundTarget(server_target, notice)
