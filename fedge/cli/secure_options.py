"""The secure aggregation options of ``fedge serve`` (and the keys they set)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

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
    for option in reversed(options):
        command = option(command)
    return command
