"""The [secure_aggregation] table: off by default, refused where it cannot work."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from fedge.cli.main import main
from fedge.server.config import load_config
from fedge.server.errors import ConfigurationError


def test_secure_aggregation_is_off_by_default() -> None:
    assert load_config(environ={}).secure_aggregation.enabled is False


def test_the_table_the_environment_and_the_command_line_each_turn_it_on(tmp_path: Path) -> None:
    config = tmp_path / "server.toml"
    config.write_text("[secure_aggregation]\nenabled = true\nclip = 0.1\n")

    from_file = load_config(config, environ={}).secure_aggregation
    from_env = load_config(environ={"FEDGE_SECURE_AGGREGATION": "yes"}).secure_aggregation
    merged = load_config(
        config, environ={}, overrides={"secure_aggregation": {"dropout": 0.2}}
    ).secure_aggregation

    assert (from_file.enabled, from_file.clip) == (True, 0.1)
    assert from_env.enabled is True
    assert (merged.enabled, merged.clip, merged.dropout) == (True, 0.1, 0.2)


@pytest.mark.parametrize("strategy", ["median", "trimmed_mean"])
def test_strategies_that_need_each_update_are_refused(strategy: str) -> None:
    with pytest.raises(ConfigurationError, match="needs each update"):
        load_config(
            environ={},
            overrides={"strategy": strategy, "secure_aggregation": {"enabled": True}},
        )


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"dropout": 0.5}, "dropout"),
        ({"clip": 0}, "clipping range"),
        ({"stage_s": 0}, "stage_s"),
        ({"threshold": 3}, "unknown secure_aggregation keys"),
    ],
)
def test_bad_settings_are_refused_with_the_reason(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_config(environ={}, overrides={"secure_aggregation": table})


def test_fedge_serve_refuses_median_with_secure_aggregation(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["serve", "--data-dir", str(tmp_path), "--strategy", "median", "--secure-aggregation"],
    )

    assert result.exit_code != 0
    assert "needs each update" in result.output


def test_fedge_simulate_secure_aggregation_turns_on_the_embedded_servers_secure_rounds() -> None:
    from fedge.cli.simulate import fleet_config
    from tests.cli.test_cli_options import params

    given = params("simulate", "--secure-aggregation")
    for outside in ("engine", "report", "plot"):
        given.pop(outside)

    assert fleet_config(given).server_settings == {"secure_aggregation": True}
    assert fleet_config({**given, "secure_aggregation": False}).server_settings == {}


def test_fedge_simulate_refuses_secure_aggregation_with_a_remote_server() -> None:
    result = CliRunner().invoke(
        main, ["simulate", "--server", "http://127.0.0.1:9", "--secure-aggregation"]
    )

    assert result.exit_code == 2
    assert "--server decides" in result.output
