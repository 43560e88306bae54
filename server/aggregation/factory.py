"""Building a strategy from configuration: a name from
:data:`~fedge.server.aggregation.strategies.STRATEGIES`, its parameters and,
for central DP, the :class:`~fedge.server.aggregation.central_dp.CentralDP`
wrapper. It lives apart from both because it needs both, and central DP is
itself a strategy: neither module has to import the other's dependents."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar, cast

from fedge.errors import ConfigError
from fedge.server.aggregation.central_dp import CentralDP
from fedge.server.aggregation.strategies import STRATEGIES, Strategy

S = TypeVar("S", bound=Strategy)


def make_strategy(name: str, *, dp: Mapping[str, Any] | None = None, **params: Any) -> Strategy:
    """A strategy from a config name (``fedavg``, ``fedavgm``, ``fedadam``,
    ``median``, ``trimmed_mean``) and its parameters; ``dp`` (``clip_norm``,
    ``noise_multiplier``, ``seed``, ``clients_per_round``) wraps it in
    :class:`~fedge.server.aggregation.central_dp.CentralDP`.

    Numbers may be given as strings (from an environment variable, say).
    Neither ``params`` nor ``dp`` is modified.
    """
    key = name.strip().lower()
    cls = STRATEGIES.get(key)
    if cls is None:
        raise ConfigError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    strategy = _build(cls, key, params)
    if dp is None:
        return strategy
    return _build(CentralDP, "dp", dp, inner=strategy)


def _build(cls: type[S], label: str, params: Mapping[str, Any], **fixed: Any) -> S:
    """``cls(**params, **fixed)`` with numbers coerced to the declared field
    types and every mistake reported as a ConfigError naming the accepted
    parameters."""
    declared = dataclasses.fields(cast(Any, cls))
    kinds = {f.name: str(f.type) for f in declared if f.init and f.name not in fixed}
    unknown = sorted(set(params) - set(kinds))
    if unknown:
        raise ConfigError(f"{label}: unknown parameters {unknown}; accepted: {sorted(kinds)}")
    values = {key: _coerce(label, key, kinds[key], value) for key, value in params.items()}
    try:
        return cls(**values, **fixed)
    except TypeError as exc:
        raise ConfigError(f"{label}: {exc}") from exc


def _coerce(label: str, key: str, kind: str, value: Any) -> Any:
    """A number given as text (or as another numeric type) converted to the
    field's declared ``int`` or ``float``; other fields pass unchanged."""
    if value is None or kind not in ("float", "int", "int | None", "float | None"):
        return value
    target = float if kind.startswith("float") else int
    try:
        if isinstance(value, bool):
            raise ValueError("a boolean is not a number")
        number = target(value)
        if target is int and float(value) != number:
            raise ValueError("not a whole number")
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{label}: {key} must be a number, got {value!r} ({exc})") from exc
    return number
