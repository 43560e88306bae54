"""The options of asynchronous aggregation (``fedge serve`` and ``fedge
simulate``), defined once: ``--aggregation sync|async`` and the buffer,
concurrency, staleness bound and staleness weight of the async mode (the
server's ``[aggregation]`` table, :mod:`fedge.server.async_config`).
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
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


def aggregation_table(params: Mapping[str, Any]) -> dict[str, Any]:
    """The ``[aggregation]`` settings among a command's parameters (those given)."""
    return {
        AGGREGATION_KEYS[name].partition(".")[2]: value
        for name, value in params.items()
        if name in AGGREGATION_KEYS and value is not None
    }
