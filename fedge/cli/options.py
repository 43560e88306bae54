"""Options that more than one ``fedge`` command takes, each defined once.

A command applies one as a decorator (``@per_round()``); what may differ by
command (its default, its help line, whether it is required) is a keyword,
while the spelling, the type, the environment variable and the hidden
aliases stay here, so two commands cannot drift apart on them.

One spelling per idea: ``--admin-token`` (``--token`` still works, hidden)
and ``--per-round`` (``--rounds-target`` still works, hidden).

:func:`build_record` turns a command's parameters into its config record
(``FleetConfig``, ``ConvertOptions``), so the fields are not re-spelled
in every command.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar, cast

import click
from click.parser import _OptionParser

from fedge.reference.data import PUBLIC_FRACTION

F = TypeVar("F", bound=Callable[..., Any])
R = TypeVar("R")


class Decorator(Protocol):
    """Applies an option to a command function, returning that function."""

    def __call__(self, function: F, /) -> F: ...


ADMIN_TOKEN_VARIABLE = "FEDGE_ADMIN_TOKEN"


class AliasedOption(click.Option):
    """An option that also answers to older spellings, left out of ``--help``
    and of error messages (those name the current spelling only)."""

    def __init__(
        self, param_decls: Sequence[str], *, hidden_aliases: Sequence[str] = (), **attrs: Any
    ) -> None:
        super().__init__(param_decls, **attrs)
        self.hidden_aliases = tuple(hidden_aliases)

    def add_to_parser(self, parser: _OptionParser, ctx: click.Context) -> None:
        super().add_to_parser(parser, ctx)
        if self.hidden_aliases:
            action = "append" if self.multiple else "store"
            parser.add_option(
                obj=self, opts=self.hidden_aliases, dest=self.name, action=action, nargs=self.nargs
            )


class StrategyChoice(click.Choice[str]):
    """The server's aggregation strategies, read from their registry
    (:data:`fedge.server.aggregation.strategies.STRATEGIES`) when a command
    first needs them, so that ``fedge --help`` does not import the server."""

    def __init__(self) -> None:
        super().__init__(())

    @property  # type: ignore[override]
    def choices(self) -> tuple[str, ...]:
        from fedge.server.aggregation.strategies import STRATEGIES

        return tuple(STRATEGIES)

    @choices.setter
    def choices(self, value: Sequence[str]) -> None:
        """click's constructor assigns the (empty) list: the registry wins."""


def _option(*decls: str, hidden_aliases: Sequence[str] = (), **attrs: Any) -> Decorator:
    # show_default only where there is a default to show, as every command had it.
    if attrs.get("default") is not None and not attrs.get("is_flag"):
        attrs.setdefault("show_default", True)
    return click.option(*decls, cls=AliasedOption, hidden_aliases=hidden_aliases, **attrs)


def server(*, required: bool = False, help: str) -> Decorator:
    return _option("--server", required=required, help=help)


def admin_token(
    help: str = f"Admin token [default: ${ADMIN_TOKEN_VARIABLE}].",
) -> Decorator:
    return _option(
        "--admin-token", hidden_aliases=("--token",), envvar=ADMIN_TOKEN_VARIABLE, help=help
    )


def strategy(*, default: str | None = None) -> Decorator:
    return _option("--strategy", type=StrategyChoice(), default=default)


def local_state() -> Decorator:
    """Weights that stay on each device and out of the aggregate (the
    server's ``local_state``)."""
    return _option(
        "--local-state",
        multiple=True,
        metavar="PATTERN",
        help="Weights that stay on each device, out of the aggregate: a name pattern "
        "(*/moving_mean), or bn for BatchNorm's moving mean and variance (FedBN) (repeatable).",
    )


def per_round(*, default: int | None = None, help: str | None = None) -> Decorator:
    """Updates that close a round: the server's ``rounds.target_participants``."""
    return _option(
        "--per-round",
        hidden_aliases=("--rounds-target",),
        type=click.IntRange(min=1),
        default=default,
        help=help,
    )


def deadline(*, default: float | None = None) -> Decorator:
    return _option(
        "--deadline",
        type=click.FloatRange(min=0, min_open=True),
        default=default,
        help="Seconds a round stays open.",
    )


def rounds(*, default: int) -> Decorator:
    return _option("--rounds", type=click.IntRange(min=1), default=default)


def devices(*, default: int | None = None, help: str | None = None) -> Decorator:
    return _option("--devices", type=click.IntRange(min=1), default=default, help=help)


def host(*, default: str | None = None, help: str | None = None) -> Decorator:
    return _option("--host", default=default, help=help)


def port(*, default: int | None = None, help: str | None = None) -> Decorator:
    return _option("--port", type=click.IntRange(0, 65535), default=default, help=help)


def seed(*, help: str | None = None) -> Decorator:
    return _option("--seed", type=int, default=0, help=help)


def batch_size(*, default: int) -> Decorator:
    return _option("--batch-size", type=click.IntRange(min=1), default=default)


def learning_rate(*, default: float) -> Decorator:
    return _option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=default)


def public_fraction(*, help: str) -> Decorator:
    return _option(
        "--public-fraction",
        type=click.FloatRange(0, 1, max_open=True),
        default=PUBLIC_FRACTION,
        help=help,
    )


def targets(*, help: str) -> Decorator:
    """Comma-separated targets, handed to the command as a tuple."""
    return _option("--targets", default="tflite,tfjs,coreml", callback=comma_list, help=help)


def by() -> Decorator:
    return _option("--by", help="Who makes the change, for the change log [default: admin].")


def why(*, required: bool) -> Decorator:
    return _option("--why", required=required, help="Why, for the change log.")


def comma_list(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    """``a, b,,c`` -> ``("a", "b", "c")``: blanks dropped."""
    return tuple(part.strip() for part in value.split(",") if part.strip())


def build_record(record: type[R], params: Mapping[str, Any], renames: Mapping[str, str] = {}) -> R:
    """``record`` (a dataclass) from a command's parameters, named as its
    fields or as ``renames`` says. A parameter that names no field is an
    error, so a new option cannot be silently dropped on its way in."""
    names = {field.name for field in dataclasses.fields(cast(Any, record))}
    values = {renames.get(name, name): value for name, value in params.items()}
    unknown = sorted(set(values) - names)
    if unknown:
        raise TypeError(f"{record.__name__} has no field for {', '.join(unknown)}")
    return record(**values)
