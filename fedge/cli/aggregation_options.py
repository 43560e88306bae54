"""How the server aggregates, as options defined once:
``--aggregation sync|async`` with the buffer, concurrency, staleness bound and
staleness weight of the async mode (``fedge serve`` and ``fedge simulate``;
the server's ``[aggregation]`` table, :mod:`fedge.server.async_config`), and
secure aggregation (``fedge serve``; the ``[secure_aggregation]`` table,
:mod:`fedge.server.secure_config`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

# Each option's key in the server's [aggregation] table.
AGGREGATION_KEYS = {
    "aggregation": "aggregation.mode",
    "buffer": "aggregation.buffer",
    "concurrency": "aggregation.concurrency",
    "max_staleness": "aggregation.max_staleness",
    "staleness_weight": "aggregation.staleness_weight",
}


def aggregation_options(function: F) -> F:
    """Apply the async aggregation options (all default to the server's)."""
    decorators = [
        click.option(
            "--aggregation",
            type=click.Choice(["sync", "async"]),
            help="sync: rounds (the default); async: buffered asynchronous aggregation "
            "(FedBuff), a new model version every --buffer accepted updates.",
        ),
        click.option(
            "--buffer",
            type=click.IntRange(min=1),
            help="async: accepted updates per server step (K) [default: 10].",
        ),
        click.option(
            "--concurrency",
            type=click.IntRange(min=1),
            help="async: devices training at once; the rest are told when to ask again "
            "[default: 20].",
        ),
        click.option(
            "--max-staleness",
            type=click.IntRange(min=0),
            help="async: an update trained on a version more than this many versions old is "
            "refused (409 too_stale) [default: 5].",
        ),
        click.option(
            "--staleness-weight",
            type=click.Choice(["sqrt", "constant", "hinge"]),
            help="async: an update's weight times 1/sqrt(1+staleness) (sqrt), 1 (constant) or "
            "1 up to 2 versions then 1/(s-1) (hinge) [default: sqrt].",
        ),
    ]
    return _apply(decorators, function)


def aggregation_table(params: Mapping[str, Any]) -> dict[str, Any]:
    """The ``[aggregation]`` settings among a command's parameters (those given)."""
    return {
        AGGREGATION_KEYS[name].partition(".")[2]: value
        for name, value in params.items()
        if name in AGGREGATION_KEYS and value is not None
    }


# Option name -> ServerConfig key (a dotted key is in the [secure_aggregation] table).
SECURE_KEYS = {
    "secure_aggregation": "secure_aggregation.enabled",
    "secure_dropout": "secure_aggregation.dropout",
    "secure_clip": "secure_aggregation.clip",
    "secure_stage_s": "secure_aggregation.stage_s",
}


def secure_aggregation_options(command: F) -> F:
    options = [
        click.option(
            "--secure-aggregation",
            is_flag=True,
            default=None,
            help="Secure rounds (SecAgg+): the server learns only the sum of the updates; "
            "weighted-mean strategies only [default: off].",
        ),
        click.option(
            "--secure-dropout",
            type=click.FloatRange(0, 0.5, max_open=True),
            help="The fraction of a secure round's devices that may drop out [default: 0.3].",
        ),
        click.option(
            "--secure-clip",
            type=click.FloatRange(0, min_open=True),
            help="Devices clip each value of an update to [-CLIP, CLIP] [default: 0.5].",
        ),
        click.option(
            "--secure-stage-s",
            type=click.FloatRange(0, min_open=True),
            help="Seconds each later stage of a secure round waits [default: 10].",
        ),
    ]
    return _apply(options, command)


def _apply(decorators: list[Callable[[F], F]], function: F) -> F:
    for decorator in reversed(decorators):
        function = decorator(function)
    return function
