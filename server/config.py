"""Server configuration: defaults, then a TOML file, then ``FEDGE_*``
environment variables, then explicit overrides (CLI flags or a test's
mapping). One frozen record; nothing mutates it after start.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedge.server.async_config import AsyncConfig, build_async_config
from fedge.server.config_values import (
    coerce,
    rate_limit_table,
    settings_from_environ,
    strings,
    validate_origins,
)
from fedge.server.errors import ConfigurationError
from fedge.server.parity_rule import ParityRule
from fedge.server.round_config import RoundConfig, build_round_config
from fedge.server.secure_config import SecureAggregationConfig, build_secure_config
from fedge.server.storage.opening import check_database


@dataclass(frozen=True)
class ServerConfig:
    data_dir: Path = Path("fedge-data")
    # A postgresql:// URL: the store is that database (None: SQLite in data_dir).
    database: str | None = None
    # This process's name among the workers of one database (/healthz; the
    # aggregator's lease); None: <host>:<pid>. No spaces, at most 40 characters.
    worker_id: str | None = None
    # PostgreSQL workers: the aggregator's round driver refreshes its lease's
    # heartbeat at every step; a heartbeat older than this (a hung aggregator)
    # lets the next worker that tries the lease cut its connections and take it:
    # keep it a few times tick_s, and above the longest step (a round's close).
    lease_timeout_s: float = 15.0
    host: str = "127.0.0.1"
    port: int = 8750
    # Request threads. Event streams, waiting long-polls and predictions run
    # on threads of their own budgets (event_streams, event_polls,
    # predict_concurrency) on top of these, so they never take one of them.
    threads: int = 8
    # Open connections waitress accepts; devices keep theirs alive between requests.
    connection_limit: int = 1000
    # Open connections from one client address (0: no cap). Behind a reverse
    # proxy every client has the proxy's address: turn it off (0) there.
    max_connections_per_address: int = 256
    # A request's headers must arrive within this many seconds of its first
    # byte, the whole request (its body too) within request_timeout_s, however
    # steadily it trickles; an idle keep-alive connection closes after idle_timeout_s.
    request_header_timeout_s: float = 10.0
    request_timeout_s: float = 300.0
    idle_timeout_s: float = 60.0
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
    # A fixed bound on an update's L2 norm; None: adaptive, norm_bound_multiple
    # times the median norm of the last norm_history_rounds rounds' accepted
    # updates (before any: 10 * sqrt(number of weights)); 0: off. See
    # rounds.norm_bound. Over the bound an update is clipped, or refused ("reject").
    max_update_norm: float | None = None
    norm_policy: str = "clip"
    norm_bound_multiple: float = 1.0
    norm_history_rounds: int = 5
    # A device's weight in the mean: "examples" (its num_examples, capped at
    # max_example_weight) or "equal" (1 each).
    device_weighting: str = "examples"
    max_example_weight: int = 100
    # No update's share of a round's weight exceeds max_share_multiple / n for
    # n updates (fedge.server.aggregation.influence).
    max_share_multiple: float = 2.0
    # POST /v1/models/{name}/predict: rows per request, and its JSON body's size.
    max_predict_batch: int = 256
    max_predict_bytes: int = 2 * 1024 * 1024
    # Predictions running at once (each on a thread of this budget, beyond
    # `threads`), and per device (a device waits for its answer: a second at
    # once is already more than its share of a 2-core server); past either,
    # 429 at once.
    predict_concurrency: int = 4
    predict_per_device: int = 1
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
    secure_aggregation: SecureAggregationConfig = field(default_factory=SecureAggregationConfig)
    aggregation: AsyncConfig = field(default_factory=AsyncConfig)  # sync or async (FedBuff)
    tick_s: float = 0.5
    seed: int = 0
    # GET /v1/events streams, and waiting long-polls (/v1/events/poll), each
    # hold a thread of their own budget (beyond `threads`): at most this many
    # of each at once. A client (a device, the admin, or else an address)
    # holds at most event_streams_per_client of each; the reserved ones are
    # for authenticated clients only (None: half). Past them: 429 or 503.
    event_streams: int = 16
    event_polls: int = 16
    event_streams_per_client: int = 2
    event_streams_reserved: int | None = None
    # A stream ends after this long (clients reconnect with Last-Event-ID).
    event_stream_s: float = 300.0
    event_keepalive_s: float = 15.0
    # A canary release is decided by a sequential test on the counted devices'
    # paired differences (fedge.server.releases.canary.decision): promoted once it
    # is shown not worse than live by the margin (in the metric's units; wrongly,
    # for one worse by the margin, with probability <= canary_alpha), rolled back
    # once shown worse (wrongly, for one as good, <= canary_beta). Each device's
    # difference is clipped to +-canary_difference_bound: under
    # margin / (2 * bound) of the counted devices (10 %) lying cannot flip a
    # decision about a candidate twice the margin away. canary_min_reports: a
    # floor of distinct counted devices before any decision. A canary still
    # collecting at canary_max_reports counted devices or canary_max_s after the
    # push ends as canary_default; its slice doubles, up to canary_max_percent,
    # whenever all its counted devices have reported. canary_require_history:
    # only devices with an accepted update or an earlier canary report count
    # (false: any device enrolled before the push; for deployments without rounds).
    canary_min_reports: int = 5
    canary_margin: float = 0.05
    canary_alpha: float = 0.05
    canary_beta: float = 0.05
    canary_difference_bound: float = 0.25
    canary_max_reports: int = 1000
    canary_max_s: float = 86_400.0
    canary_default: str = "rollback"
    canary_max_percent: float = 50.0
    canary_require_history: bool = True
    # None: from the metric's name (accuracy: higher is better; mae, loss: lower).
    canary_metric_higher_is_better: bool | None = None
    # Parity on the devices' runtimes (fedge.server.releases.canary.parity): a report
    # fails above the max error or below the agreement; a runtime fails when at
    # least canary_parity_min_devices counted devices fail and are a majority.
    canary_parity_max_error: float = 0.05
    canary_parity_min_agreement: float = 0.95
    canary_parity_min_devices: int = 2
    # Origins (scheme://host[:port]) whose pages may call the API (CORS);
    # empty: none, only the server's own pages (same origin) can.
    cors_origins: tuple[str, ...] = ()
    # Per-client limits (fedge.server.devices.rate_limits): family -> "RATE/s:BURST"
    # or "off"; a family not named keeps its default.
    rate_limits: dict[str, str] = field(default_factory=dict)
    # Proxies (addresses or networks) whose X-Forwarded-For names the client;
    # empty: the connection's address is the client's.
    trusted_proxies: tuple[str, ...] = ()
    # Enrolment needs an identity token signed by the app's backend: its public
    # key (PEM) or a JWKS file; the token's `aud` and `iss` must match these if set.
    device_issuer: Path | None = None
    device_audience: str | None = None
    device_issuer_name: str | None = None
    # A device not seen for this long is forgotten, its rows freed (0: never).
    device_ttl_s: float = 30 * 24 * 3600.0
    # Origins whose pages may show the server's pages in a frame
    # (Content-Security-Policy frame-ancestors); empty: none may.
    frame_ancestors: tuple[str, ...] = ()
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
        self.secure_aggregation.validate(self.strategy)
        self.aggregation.validate()
        if self.secure_aggregation.enabled and self.aggregation.mode == "async":
            raise ConfigurationError(
                "secure aggregation runs in synchronous rounds only: its stages need one "
                "round's devices together; use --aggregation sync"
            )
        check_database(self.database)
        self._validate_workers()
        if self.norm_policy not in ("reject", "clip"):
            raise ConfigurationError("norm_policy must be 'reject' or 'clip'")
        if self.max_update_bytes < 1024:
            raise ConfigurationError("max_update_bytes must be >= 1024")
        if self.max_release_bytes < 1024:
            raise ConfigurationError("max_release_bytes must be >= 1024")
        self._validate_release_builds()
        if self.max_update_norm is not None and not self.max_update_norm >= 0:
            raise ConfigurationError("max_update_norm must be >= 0 (0 turns the bound off)")
        self._validate_influence()
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
        self._validate_budgets()
        if not (self.event_stream_s > 0 and self.event_keepalive_s > 0):
            raise ConfigurationError("event_stream_s and event_keepalive_s must be > 0")
        self._validate_canary()
        validate_origins(self.cors_origins)
        self._validate_clients()
        validate_origins(self.frame_ancestors, "frame_ancestors")
        self._validate_health()

    def _validate_clients(self) -> None:
        from fedge.server.devices.rate_limits import parse_proxies, parse_rate_limits

        parse_rate_limits(self.rate_limits)
        parse_proxies(self.trusted_proxies)
        if not 0 <= self.device_ttl_s < float("inf"):
            raise ConfigurationError("device_ttl_s must be >= 0 (0: devices never expire)")

    def _validate_influence(self) -> None:
        if self.max_example_weight < 1:
            raise ConfigurationError("max_example_weight must be >= 1")
        if self.device_weighting not in ("examples", "equal"):
            raise ConfigurationError("device_weighting must be 'examples' or 'equal'")
        if not 1.0 <= self.max_share_multiple < float("inf"):
            raise ConfigurationError(
                "max_share_multiple must be >= 1 (1: every update weighs the same)"
            )
        if not 0 < self.norm_bound_multiple < float("inf") or self.norm_history_rounds < 1:
            raise ConfigurationError("norm_bound_multiple must be > 0, norm_history_rounds >= 1")

    def _validate_workers(self) -> None:
        if self.worker_id is not None and (
            not self.worker_id or " " in self.worker_id or len(self.worker_id) > 40
        ):
            raise ConfigurationError("worker_id must be 1-40 characters without spaces")
        if not 0 < self.lease_timeout_s < float("inf"):
            raise ConfigurationError("lease_timeout_s must be > 0 (and a few times tick_s)")

    def _validate_release_builds(self) -> None:
        if self.release_every_rounds < 0 or not self.release_build_timeout_s > 0:
            raise ConfigurationError(
                "release_every_rounds must be >= 0 (0: off), release_build_timeout_s > 0"
            )

    def _validate_budgets(self) -> None:
        if self.threads < 1 or self.event_streams < 0 or self.event_polls < 0:
            raise ConfigurationError("threads must be >= 1, event_streams and event_polls >= 0")
        reserved = self.event_streams_reserved
        if reserved is not None and not 0 <= reserved <= self.event_streams:
            raise ConfigurationError(
                f"event_streams_reserved must be in 0..event_streams ({self.event_streams})"
            )
        if self.event_streams_per_client < 1:
            raise ConfigurationError("event_streams_per_client must be >= 1")
        if not 1 <= self.predict_per_device <= self.predict_concurrency:
            raise ConfigurationError(
                "predict_concurrency must be >= 1 and predict_per_device in 1..predict_concurrency"
            )
        if self.connection_limit < 1 or self.max_connections_per_address < 0:
            raise ConfigurationError(
                "connection_limit must be >= 1, max_connections_per_address >= 0 (0: no cap)"
            )
        timeouts = (self.request_header_timeout_s, self.request_timeout_s, self.idle_timeout_s)
        if not all(t > 0 for t in timeouts):
            raise ConfigurationError(
                "request_header_timeout_s, request_timeout_s and idle_timeout_s must be > 0"
            )

    def _validate_canary(self) -> None:
        if self.canary_min_reports < 1 or self.canary_max_reports < self.canary_min_reports:
            raise ConfigurationError("canary_min_reports must be >= 1 and <= canary_max_reports")
        if not 0 < self.canary_difference_bound < float("inf"):
            raise ConfigurationError("canary_difference_bound must be > 0")
        if not 0 < self.canary_margin < self.canary_difference_bound:
            raise ConfigurationError("canary_margin must be > 0 and < canary_difference_bound")
        if not (0 < self.canary_alpha < 1 and 0 < self.canary_beta < 1):
            raise ConfigurationError("canary_alpha and canary_beta must be between 0 and 1")
        if not 0 < self.canary_max_s < float("inf") or not 0 < self.canary_max_percent <= 100:
            raise ConfigurationError("canary_max_s must be > 0, canary_max_percent in (0, 100]")
        if self.canary_default not in ("rollback", "promote"):
            raise ConfigurationError("canary_default must be 'rollback' or 'promote'")
        self.parity_rule.validate()

    def reserved_of(self, budget: int) -> int:
        """How many of ``budget`` streams (or waiting long-polls) are kept for
        authenticated clients."""
        reserved = self.event_streams_reserved
        return budget // 2 if reserved is None else min(reserved, budget)

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
    def parity_rule(self) -> ParityRule:
        return ParityRule(
            self.canary_parity_max_error,
            self.canary_parity_min_agreement,
            self.canary_parity_min_devices,
        )

    @property
    def server_threads(self) -> int:
        """Waitress's threads: the request threads plus each budget's own."""
        return self.threads + self.event_streams + self.event_polls + self.predict_concurrency


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
    for layer in (
        settings_from_environ(
            os.environ if environ is None else environ,
            {f.name for f in dataclasses.fields(ServerConfig)},
            {f.name for f in dataclasses.fields(RoundConfig)},
        ),
        overrides or {},
    ):
        for key, value in layer.items():
            if value is None:
                continue
            if (
                key in ("rounds", "secure_aggregation", "aggregation")
                and isinstance(value, Mapping)
                and isinstance(values.get(key), Mapping)
            ):
                values[key] = {**values[key], **value}
            else:
                values[key] = value
    config = _build(values)
    config.validate()
    # Absolute, so that files under it are found whatever resolves them
    # (Flask's send_file takes a relative path as relative to the app's package).
    return dataclasses.replace(config, data_dir=config.data_dir.absolute())


def _build(values: Mapping[str, Any]) -> ServerConfig:
    fields = {f.name: f for f in dataclasses.fields(ServerConfig)}
    unknown = set(values) - set(fields)
    if unknown:
        raise ConfigurationError(f"unknown configuration keys: {', '.join(sorted(unknown))}")
    kwargs: dict[str, Any] = {}
    for name, raw in values.items():
        if name == "rounds":
            kwargs[name] = build_round_config(raw)
        elif name == "secure_aggregation":
            kwargs[name] = build_secure_config(raw)
        elif name == "aggregation":
            kwargs[name] = build_async_config(raw)
        elif name == "rate_limits":
            kwargs[name] = rate_limit_table(raw)
        elif name == "strategy_params":
            if not isinstance(raw, Mapping):
                raise ConfigurationError("strategy_params must be a table")
            kwargs[name] = dict(raw)
        elif str(fields[name].type).startswith("tuple"):
            kwargs[name] = strings(name, raw)
        else:
            kwargs[name] = coerce(name, fields[name].type, raw)
    return ServerConfig(**kwargs)
