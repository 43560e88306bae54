"""The bound on an update's norm, fixed for each round when it opens.

By default the bound follows what honest updates look like:
``norm_bound_multiple`` (1) times the median norm (as received) of the
accepted updates of the last ``norm_history_rounds`` (5) closed rounds,
as adaptive clipping to the median quantile does (Andrew et al., 2021).
A median is what a minority cannot move: however large the updates of
fewer than half of those devices, the bound stays the honest devices'
typical norm, so no update moves the model more than a typical honest
one (with the default ``clip``, the larger honest half is scaled down to
it, keeping its direction; the reference task's honest norms are within
2.2 times their median). Until three norms are known (a new server), and as
a ceiling always, it is the fixed bound ``10 * sqrt(P)`` for ``P`` weights.
An operator's ``max_update_norm`` replaces all of this (0: no bound).

The bound is stored in the round's ``config`` (``max_update_norm``) when
the round opens, in the same transaction: every update of the round meets
the same bound, after a restart too, and what a clipped update became is
its stored (already clipped) file, which recovery adds again as it is.
"""

from __future__ import annotations

import math
from typing import Any

from fedge.server.aggregation.influence import median_norm_bound
from fedge.server.config import ServerConfig
from fedge.server.storage.store import Tx
from fedge.wire.weight_spec import ModelSpec

# The round config's key for the round's bound (JSON null: no bound).
CONFIG_KEY = "max_update_norm"


def fixed_bound(config: ServerConfig, specs: ModelSpec) -> float | None:
    """The configured bound, or ``10 * sqrt(P)`` for a model of ``P``
    weights: a delta that moves the weights by 10 each, root mean square.
    No real fine-tuning step comes near it, and it keeps absurd (finite)
    values such as 3e38 out of the aggregate. ``0`` turns it off."""
    if config.max_update_norm is not None:
        return None if config.max_update_norm == 0 else config.max_update_norm
    return 10.0 * math.sqrt(max(specs.size, 1))


def bound_for_new_round(tx: Tx, config: ServerConfig, specs: ModelSpec) -> float | None:
    """The bound for the round about to open (see the module's docstring)."""
    fixed = fixed_bound(config, specs)
    if config.max_update_norm is not None or fixed is None:
        return fixed
    norms: list[float] = []
    closed = 0
    # Abandoned and failed rounds are skipped: a few more rows than needed.
    for record in tx.rounds.recent(4 * config.norm_history_rounds + 4):
        if record.state != "closed":
            continue
        norms.extend(update.norm for update in tx.updates.of_round(record.id))
        closed += 1
        if closed == config.norm_history_rounds:
            break
    adaptive = median_norm_bound(norms, config.norm_bound_multiple)
    return fixed if adaptive is None else min(adaptive, fixed)


def round_bound(round_config: dict[str, Any], fallback: float | None) -> float | None:
    """The bound a round was opened with; ``fallback`` for a round opened
    before rounds stored theirs."""
    if CONFIG_KEY not in round_config:
        return fallback
    value = round_config[CONFIG_KEY]
    return None if value is None else float(value)
