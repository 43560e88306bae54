"""Configuration layers: defaults < file < environment < explicit overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedge.server.config import load_config
from fedge.server.errors import ConfigurationError


def test_layers_apply_in_order(tmp_path: Path) -> None:
    config_file = tmp_path / "fedge.toml"
    config_file.write_text(
        'port = 9000\nstrategy = "fedadam"\n[rounds]\ntarget_participants = 8\n'
        "min_participants = 4\n"
    )
    environ = {
        "FEDGE_PORT": "9100",
        "FEDGE_ROUND_DEADLINE_S": "12.5",
        "FEDGE_LEASE_TIMEOUT_S": "4",
        "HOME": "/x",
    }

    config = load_config(config_file, environ, {"port": 9200, "rounds": {"min_participants": 2}})

    assert config.port == 9200  # override beats environment beats file
    assert config.strategy == "fedadam"  # from the file
    assert config.rounds.deadline_s == 12.5  # from the environment
    assert config.lease_timeout_s == 4.0
    assert config.rounds.target_participants == 8  # file, kept beside the override
    assert config.rounds.min_participants == 2  # override
    assert config.data_dir == Path("fedge-data").absolute()  # default, made absolute


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"prot": 1}, "unknown configuration keys: prot"),
        ({"port": "eighty"}, "port: cannot use 'eighty'"),
        ({"norm_policy": "ignore"}, "norm_policy must be 'reject' or 'clip'"),
        ({"rounds": {"min_participants": 5, "target_participants": 2}}, "min_participants (5)"),
        ({"rounds": {"deadline": 3}}, "unknown round keys: deadline"),
        ({"dp_noise_multiplier": 1.0}, "central DP needs dp_clip_norm"),
        ({"rounds": {"require_idle": "ture"}}, "require_idle: cannot use 'ture'"),
        ({"port": True}, "port: cannot use True"),
        ({"enrolment_key": 12}, "enrolment_key: cannot use 12"),
        ({"device_weighting": "claimed"}, "device_weighting must be 'examples' or 'equal'"),
        ({"max_share_multiple": 0.5}, "max_share_multiple must be >= 1"),
        ({"max_share_multiple": "nan"}, "max_share_multiple must be >= 1"),
        ({"norm_bound_multiple": 0}, "norm_bound_multiple must be > 0"),
        ({"norm_history_rounds": 0}, "norm_history_rounds >= 1"),
        ({"max_example_weight": 0}, "max_example_weight must be >= 1"),
        ({"lease_timeout_s": 0}, "lease_timeout_s must be > 0"),
        ({"lease_timeout_s": "nan"}, "lease_timeout_s must be > 0"),
    ],
)
def test_bad_configuration_is_refused_clearly(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_config(None, {}, overrides)

    assert message in str(caught.value)


def test_an_unreadable_file_names_itself(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("port = = 1")

    with pytest.raises(ConfigurationError, match=r"bad\.toml"):
        load_config(bad, {}, {})


def test_an_unknown_fedge_variable_is_an_error_not_ignored() -> None:
    with pytest.raises(ConfigurationError, match="unknown environment variable FEDGE_PROT"):
        load_config(None, {"FEDGE_PROT": "9000"}, {})


def test_a_configuration_error_is_not_an_http_error() -> None:
    from fedge.server.errors import ServerError

    assert not issubclass(ConfigurationError, ServerError)
