"""JSON from untrusted bytes, strictly: one parser for the update codec's
headers and metrics and for the server's request bodies.

Writing, :func:`finite_or_null` turns a non-finite float into ``None``, so
what fedge writes is strict JSON too.

``json.loads`` alone takes ``NaN`` and ``Infinity`` literals and duplicate
keys (the last wins), and raises ``RecursionError`` (not ``ValueError``) on
deep nesting; here all of these are :class:`StrictJSONError`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any


class StrictJSONError(ValueError):
    """Bytes that are not strict JSON; the message says why."""


def loads_strict(raw: bytes | str) -> Any:
    try:
        return json.loads(raw, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except RecursionError as exc:
        raise StrictJSONError("nested too deeply") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise StrictJSONError(f"not strict JSON: {exc}") from exc


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key[:64]!r}")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def finite_or_null(value: Any) -> Any:
    """``value`` with every non-finite float (in dicts, lists, tuples) as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_or_null(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_null(item) for item in value]
    return value


def field_mismatch(
    raw: dict[str, Any], required: Sequence[str], optional: Sequence[str] = ()
) -> str | None:
    """What is wrong with an object's keys against a wire record's fields
    (``None`` when nothing): missing required ones, unknown ones (the first
    five), bounded so that a hostile key list cannot make the message large."""
    missing = [name for name in required if name not in raw]
    unknown = sorted(set(raw) - set(required) - set(optional))
    if not missing and not unknown:
        return None
    return f"missing {missing or 'none'}, unknown {unknown[:5] or 'none'}"[:240]
