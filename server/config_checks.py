"""The checks of a :class:`~fedge.server.config.ServerConfig` that take more
than a line: each group of settings (clients, influence on the mean, thread
budgets, canary, health) refused at start with a message naming them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fedge.server.errors import ConfigurationError

if TYPE_CHECKING:
    from fedge.server.config import ServerConfig


def check_clients(config: ServerConfig) -> None:
    from fedge.server.devices.rate_limits import parse_proxies, parse_rate_limits

    parse_rate_limits(config.rate_limits)
    parse_proxies(config.trusted_proxies)
    if not 0 <= config.device_ttl_s < float("inf"):
        raise ConfigurationError("device_ttl_s must be >= 0 (0: devices never expire)")


def check_influence(config: ServerConfig) -> None:
    if config.max_example_weight < 1:
        raise ConfigurationError("max_example_weight must be >= 1")
    if config.device_weighting not in ("examples", "equal"):
        raise ConfigurationError("device_weighting must be 'examples' or 'equal'")
    if not 1.0 <= config.max_share_multiple < float("inf"):
        raise ConfigurationError(
            "max_share_multiple must be >= 1 (1: every update weighs the same)"
        )
    if not 0 < config.norm_bound_multiple < float("inf") or config.norm_history_rounds < 1:
        raise ConfigurationError("norm_bound_multiple must be > 0, norm_history_rounds >= 1")


def check_release_builds(config: ServerConfig) -> None:
    if config.release_every_rounds < 0 or not config.release_build_timeout_s > 0:
        raise ConfigurationError(
            "release_every_rounds must be >= 0 (0: off), release_build_timeout_s > 0"
        )


def check_budgets(config: ServerConfig) -> None:
    if config.threads < 1 or config.event_streams < 0 or config.event_polls < 0:
        raise ConfigurationError("threads must be >= 1, event_streams and event_polls >= 0")
    reserved = config.event_streams_reserved
    if reserved is not None and not 0 <= reserved <= config.event_streams:
        raise ConfigurationError(
            f"event_streams_reserved must be in 0..event_streams ({config.event_streams})"
        )
    if config.event_streams_per_client < 1:
        raise ConfigurationError("event_streams_per_client must be >= 1")
    if not 1 <= config.predict_per_device <= config.predict_concurrency:
        raise ConfigurationError(
            "predict_concurrency must be >= 1 and predict_per_device in 1..predict_concurrency"
        )
    if config.connection_limit < 1 or config.max_connections_per_address < 0:
        raise ConfigurationError(
            "connection_limit must be >= 1, max_connections_per_address >= 0 (0: no cap)"
        )
    timeouts = (config.request_header_timeout_s, config.request_timeout_s, config.idle_timeout_s)
    if not all(t > 0 for t in timeouts):
        raise ConfigurationError(
            "request_header_timeout_s, request_timeout_s and idle_timeout_s must be > 0"
        )


def check_canary(config: ServerConfig) -> None:
    if config.canary_min_reports < 1 or config.canary_max_reports < config.canary_min_reports:
        raise ConfigurationError("canary_min_reports must be >= 1 and <= canary_max_reports")
    if not 0 < config.canary_difference_bound < float("inf"):
        raise ConfigurationError("canary_difference_bound must be > 0")
    if not 0 < config.canary_margin < config.canary_difference_bound:
        raise ConfigurationError("canary_margin must be > 0 and < canary_difference_bound")
    if not (0 < config.canary_alpha < 1 and 0 < config.canary_beta < 1):
        raise ConfigurationError("canary_alpha and canary_beta must be between 0 and 1")
    if not 0 < config.canary_max_s < float("inf") or not 0 < config.canary_max_percent <= 100:
        raise ConfigurationError("canary_max_s must be > 0, canary_max_percent in (0, 100]")
    if config.canary_default not in ("rollback", "promote"):
        raise ConfigurationError("canary_default must be 'rollback' or 'promote'")


def check_health(config: ServerConfig) -> None:
    bounds = (config.health_margin, config.health_max_distance, config.health_max_shift)
    if not (
        1.0 <= config.health_window_s <= 86_400 * 30
        and config.health_min_devices >= 2
        and all(0 <= b < float("inf") for b in bounds)
    ):
        raise ConfigurationError(
            "health_window_s must be 1 s to 30 days, health_min_devices >= 2 "
            "(one device never raises an alert), health_margin, health_max_distance "
            "and health_max_shift >= 0"
        )
