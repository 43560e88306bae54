"""Server configuration: defaults, then a TOML file, then ``FEDGE_*``
environment variables, then explicit overrides (CLI flags or a test's
mapping). One frozen record; nothing mutates it after start.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedge.server.errors import ConfigurationError

ENV_PREFIX = "FEDGE_"
# FEDGE_ variables that other parts of fedge read; they are not server settings.
NOT_SERVER_SETTINGS = frozenset({"FEDGE_NODE_MODULES"})


@dataclass(frozen=True)
class RoundConfig:
    """What every round asks of devices and when it closes."""

    local_epochs: int = 1
    batch_size: int = 16
    learning_rate: float = 0.05
    deadline_s: float = 60.0
    target_participants: int = 10
    min_participants: int = 2
    over_selection: float = 1.3
    require_idle: bool = False
    require_charging: bool = False
    require_unmetered: bool = False

    def validate(self) -> None:
        if self.target_participants < 1 or self.min_participants < 1:
            raise ConfigurationError("target and minimum participants must be >= 1")
        if self.min_participants > self.target_participants:
            raise ConfigurationError(
                f"min_participants ({self.min_participants}) > target_participants "
                f"({self.target_participants})"
            )
        if self.over_selection < 1.0:
            raise ConfigurationError("over_selection must be >= 1.0")
        if self.deadline_s <= 0 or self.local_epochs < 1 or self.batch_size < 1:
            raise ConfigurationError("deadline_s, local_epochs and batch_size must be positive")
        if not self.learning_rate > 0:
            raise ConfigurationError("learning_rate must be > 0")

    @property
    def selection_slots(self) -> int:
        return max(self.target_participants, round(self.target_participants * self.over_selection))


@dataclass(frozen=True)
class ServerConfig:
    data_dir: Path = Path("fedge-data")
    host: str = "127.0.0.1"
    port: int = 8750
    threads: int = 8
    # Open connections waitress accepts; devices keep theirs alive between requests.
    connection_limit: int = 2000
    admin_token: str | None = None
    enrolment_key: str | None = None
    model: Path | None = None
    max_update_bytes: int = 64 * 1024 * 1024
    # POST /v1/releases: the largest bundle (as a tar) an admin may push.
    max_release_bytes: int = 256 * 1024 * 1024
    # Cut a release from the global checkpoint after every N closed rounds (0: off);
    # a release build (its worker process) is stopped, and fails, after this long.
    release_every_rounds: int = 0
    release_build_timeout_s: float = 1800.0
    # None: 10 * sqrt(number of weights) (see ingest.effective_max_update_norm); 0: off.
    max_update_norm: float | None = None
    norm_policy: str = "reject"
    # A device's weight in the mean is its num_examples, capped at this.
    max_example_weight: int = 10_000
    # POST /v1/models/{name}/predict: rows per request, and its JSON body's size.
    max_predict_batch: int = 256
    max_predict_bytes: int = 2 * 1024 * 1024
    # Update files of ended rounds are deleted this many rounds later (None: kept).
    update_retention_rounds: int | None = 2
    strategy: str = "fedavg"
    strategy_params: dict[str, Any] = field(default_factory=dict)
    dp_clip_norm: float | None = None
    dp_noise_multiplier: float = 0.0
    dp_delta: float = 1e-5
    # Tests only: seeds the DP noise, so anyone with the seed can remove it.
    dp_insecure_test_seed: int | None = None
    # Weights (name patterns, or ``bn`` for BatchNorm's statistics) that stay
    # on each device and out of the aggregate (fedge.server.aggregation.roles).
    local_state: tuple[str, ...] = ()
    rounds: RoundConfig = field(default_factory=RoundConfig)
    tick_s: float = 0.5
    seed: int = 0
    # GET /v1/events streams and waiting long-polls each hold a waitress thread:
    # at most this many at once (None: half of `threads`), the rest get 503.
    event_streams: int | None = None
    # A stream ends after this long (clients reconnect with Last-Event-ID).
    event_stream_s: float = 300.0
    event_keepalive_s: float = 15.0
    # A canary release is decided once this many devices of its slice have
    # reported (fedge.server.releases.canary.reports): promoted unless its metric is worse than
    # the live release's by more than the margin (in the metric's units).
    canary_min_reports: int = 5
    canary_margin: float = 0.01
    # None: from the metric's name (accuracy: higher is better; mae, loss: lower).
    canary_metric_higher_is_better: bool | None = None
    # Origins (scheme://host[:port]) whose pages may call the API (CORS);
    # empty: none, only the server's own pages (same origin) can.
    cors_origins: tuple[str, ...] = ()
    # The live model's health (fedge.server.releases.health): devices report
    # once per window; a window of at least health_min_devices devices is
    # judged against the release's first such window: an alert when the
    # median metric is worse by more than health_margin, or the prediction
    # distribution moved further than health_max_distance (total variation
    # of class shares) or health_max_shift (quantiles, in interquartile ranges).
    health_window_s: float = 3600.0
    health_min_devices: int = 5
    health_margin: float = 0.05
    health_max_distance: float = 0.2
    health_max_shift: float = 1.0
    # On a raised health alert, cut a release from the current global
    # checkpoint (by "health"); its canary decides it like any other.
    health_alert_cut: bool = False

    def validate(self) -> None:
        self.rounds.validate()
        if self.norm_policy not in ("reject", "clip"):
            raise ConfigurationError("norm_policy must be 'reject' or 'clip'")
        if self.max_update_bytes < 1024:
            raise ConfigurationError("max_update_bytes must be >= 1024")
        if self.max_release_bytes < 1024:
            raise ConfigurationError("max_release_bytes must be >= 1024")
        self._validate_release_builds()
        if self.max_update_norm is not None and not self.max_update_norm >= 0:
            raise ConfigurationError("max_update_norm must be >= 0 (0 turns the bound off)")
        if self.max_example_weight < 1:
            raise ConfigurationError("max_example_weight must be >= 1")
        if self.max_predict_batch < 1 or self.max_predict_bytes < 1024:
            raise ConfigurationError("max_predict_batch must be >= 1, max_predict_bytes >= 1024")
        if self.update_retention_rounds is not None and self.update_retention_rounds < 0:
            raise ConfigurationError("update_retention_rounds must be >= 0")
        if not self.tick_s > 0:
            raise ConfigurationError("tick_s must be > 0")
        if self.dp_noise_multiplier < 0:
            raise ConfigurationError("dp_noise_multiplier must be >= 0")
        if self.dp_noise_multiplier > 0 and self.dp_clip_norm is None:
            raise ConfigurationError("central DP needs dp_clip_norm")
        if self.event_streams is not None and not 0 <= self.event_streams < self.threads:
            raise ConfigurationError(
                f"event_streams must be in 0..{self.threads - 1}: each open stream holds "
                f"one of the {self.threads} threads, and other requests need one too"
            )
        if not (self.event_stream_s > 0 and self.event_keepalive_s > 0):
            raise ConfigurationError("event_stream_s and event_keepalive_s must be > 0")
        self._validate_canary()
        self._validate_health()
        _validate_origins(self.cors_origins)

    def _validate_release_builds(self) -> None:
        if self.release_every_rounds < 0 or not self.release_build_timeout_s > 0:
            raise ConfigurationError(
                "release_every_rounds must be >= 0 (0: off), release_build_timeout_s > 0"
            )

    def _validate_canary(self) -> None:
        if self.canary_min_reports < 1 or not 0 <= self.canary_margin < float("inf"):
            raise ConfigurationError("canary_min_reports must be >= 1, canary_margin >= 0")

    def _validate_health(self) -> None:
        bounds = (self.health_margin, self.health_max_distance, self.health_max_shift)
        if not (
            1.0 <= self.health_window_s <= 86_400 * 30
            and self.health_min_devices >= 2
            and all(0 <= b < float("inf") for b in bounds)
        ):
            raise ConfigurationError(
                "health_window_s must be 1 s to 30 days, health_min_devices >= 2 "
                "(one device never raises an alert), health_margin, health_max_distance "
                "and health_max_shift >= 0"
            )

    @property
    def event_stream_limit(self) -> int:
        """How many event streams (and waiting long-polls) may be open at once."""
        return self.threads // 2 if self.event_streams is None else self.event_streams


def load_config(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ServerConfig:
    """Merge the layers in order; unknown keys are an error, not ignored."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            values.update(tomllib.loads(path.read_text()))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigurationError(f"cannot read config {path}: {exc}") from exc
    for layer in (_from_environ(os.environ if environ is None else environ), overrides or {}):
        for key, value in layer.items():
            if value is None:
                continue
            if (
                key == "rounds"
                and isinstance(value, Mapping)
                and isinstance(values.get("rounds"), Mapping)
            ):
                values["rounds"] = {**values["rounds"], **value}
            else:
                values[key] = value
    config = _build(values)
    config.validate()
    # Absolute, so that files under it are found whatever resolves them
    # (Flask's send_file takes a relative path as relative to the app's package).
    return dataclasses.replace(config, data_dir=config.data_dir.absolute())


def _from_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(ServerConfig)}
    round_names = {f.name for f in dataclasses.fields(RoundConfig)}
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


def _build(values: Mapping[str, Any]) -> ServerConfig:
    fields = {f.name: f for f in dataclasses.fields(ServerConfig)}
    unknown = set(values) - set(fields)
    if unknown:
        raise ConfigurationError(f"unknown configuration keys: {', '.join(sorted(unknown))}")
    kwargs: dict[str, Any] = {}
    for name, raw in values.items():
        if name == "rounds":
            kwargs[name] = _build_rounds(raw)
        elif name == "strategy_params":
            if not isinstance(raw, Mapping):
                raise ConfigurationError("strategy_params must be a table")
            kwargs[name] = dict(raw)
        elif str(fields[name].type).startswith("tuple"):
            kwargs[name] = _strings(name, raw)
        else:
            kwargs[name] = _coerce(name, fields[name].type, raw)
    return ServerConfig(**kwargs)


def _build_rounds(raw: Any) -> RoundConfig:
    if isinstance(raw, RoundConfig):
        return raw
    if not isinstance(raw, Mapping):
        raise ConfigurationError("rounds must be a table")
    fields = {f.name: f for f in dataclasses.fields(RoundConfig)}
    unknown = set(raw) - set(fields)
    if unknown:
        raise ConfigurationError(f"unknown round keys: {', '.join(sorted(unknown))}")
    return RoundConfig(**{k: _coerce(k, fields[k].type, v) for k, v in raw.items()})


def _coerce(name: str, annotation: Any, raw: Any) -> Any:
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


def _strings(name: str, raw: Any) -> tuple[str, ...]:
    """A list of strings: a TOML array, or one comma-separated string (environment)."""
    if isinstance(raw, str):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if isinstance(raw, (list, tuple)) and all(isinstance(item, str) for item in raw):
        return tuple(raw)
    raise ConfigurationError(f"{name}: cannot use {raw!r}: not a list of strings")


def _validate_origins(origins: tuple[str, ...]) -> None:
    for origin in origins:
        if not _ORIGIN.fullmatch(origin):
            raise ConfigurationError(
                f"cors_origins: {origin!r} is not an origin; write scheme://host[:port] "
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
