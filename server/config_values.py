"""Reading one setting's value: the spellings a TOML file, an environment
variable or a test's mapping may use, each checked, a bad one a
:class:`~fedge.server.errors.ConfigurationError` that names the setting.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fedge.server.errors import ConfigurationError

ENV_PREFIX = "FEDGE_"
# FEDGE_ variables that other parts of fedge read; they are not server settings
# (the web tests' node_modules; a worker's index under `fedge serve --workers`).
NOT_SERVER_SETTINGS = frozenset({"FEDGE_NODE_MODULES", "FEDGE_SERVE_WORKER_INDEX"})


def coerce(name: str, annotation: Any, raw: Any) -> Any:
    text = str(annotation)
    try:
        if raw is None:
            return None
        if "Path" in text:
            return Path(raw)
        if text.startswith("bool"):
            return _boolean(raw)
        if text.startswith("int"):
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError("not a whole number")
            return int(raw)
        if text.startswith("float"):
            if isinstance(raw, bool):
                raise ValueError("not a number")
            return float(raw)
        if text.startswith("str") and not isinstance(raw, str):
            raise ValueError("not a string")
        return raw
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"{name}: cannot use {raw!r}: {exc}") from exc


_ORIGIN = re.compile(
    r"https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?"
)


def strings(name: str, raw: Any) -> tuple[str, ...]:
    """A list of strings: a TOML array, or one comma-separated string (environment)."""
    if isinstance(raw, str):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if isinstance(raw, (list, tuple)) and all(isinstance(item, str) for item in raw):
        return tuple(raw)
    raise ConfigurationError(f"{name}: cannot use {raw!r}: not a list of strings")


def rate_limit_table(raw: Any) -> dict[str, str]:
    """A table (TOML, a test's mapping) or ``family=spec,...`` (environment)."""
    if isinstance(raw, str):
        pairs = [part.split("=", 1) for part in raw.split(",") if part.strip()]
        if any(len(pair) != 2 for pair in pairs):
            raise ConfigurationError(
                f"rate_limits: cannot use {raw!r}: write family=RATE/s:BURST,..."
            )
        raw = {name.strip(): spec.strip() for name, spec in pairs}
    if not isinstance(raw, Mapping) or not all(isinstance(v, str) for v in raw.values()):
        raise ConfigurationError('rate_limits must be a table of family = "RATE/s:BURST"')
    return {str(name): str(spec) for name, spec in raw.items()}


def validate_origins(origins: tuple[str, ...], name: str = "cors_origins") -> None:
    for origin in origins:
        if not _ORIGIN.fullmatch(origin):
            raise ConfigurationError(
                f"{name}: {origin!r} is not an origin; write scheme://host[:port] "
                "(e.g. https://app.example.com), no path, no trailing slash, no wildcard"
            )


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _boolean(raw: Any) -> bool:
    """True or false, spelled one of the accepted ways; a typo is an error."""
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"say one of {', '.join(_TRUE + _FALSE)}")


def settings_from_environ(
    environ: Mapping[str, str], names: set[str], round_names: set[str]
) -> dict[str, Any]:
    """The ``FEDGE_*`` variables naming a setting (``names``) or a round
    setting (``FEDGE_ROUND_*``, ``round_names``); any other is an error."""
    values: dict[str, Any] = {}
    rounds: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX) or key in NOT_SERVER_SETTINGS:
            continue
        name = key[len(ENV_PREFIX) :].lower()
        if name in names:
            values[name] = raw
        elif name.startswith("round_") and name[6:] in round_names:
            rounds[name[6:]] = raw
        else:
            raise ConfigurationError(
                f"unknown environment variable {key}: FEDGE_ variables name settings "
                f"(FEDGE_PORT, FEDGE_ROUND_DEADLINE_S, ...); see `fedge serve --help`"
            )
    if rounds:
        values["rounds"] = rounds
    return values
