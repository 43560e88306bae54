"""The options several commands share (fedge.cli.options): one spelling each
in --help, every older spelling still accepted, and config records built
from the parameters without dropping any."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from fedge.cli.convert import convert_options
from fedge.cli.main import main
from fedge.cli.options import build_record
from fedge.cli.serve import server_overrides
from fedge.cli.simulate import fleet_config
from fedge.converters.options import ConvertOptions, Tolerance
from fedge.server.aggregation.strategies import STRATEGIES


def params(command: str, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """What the command would be called with, without running it."""
    cmd = main.commands[command]
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("FEDGE_ADMIN_TOKEN", raising=False)
        for name, value in (env or {}).items():
            patch.setenv(name, value)
        with cmd.make_context(command, list(args)) as ctx:
            return dict(ctx.params)


@pytest.mark.parametrize(
    ("command", "args"),
    [
        ("rollout", ("10", "--why", "w", "--server", "http://s")),
        ("promote", ("2", "--server", "http://s")),
        ("rollback", ("--why", "w", "--server", "http://s")),
        ("push", (".", "--server", "http://s")),
        ("simulate", ()),
    ],
)
def test_admin_token_by_either_spelling_or_the_variable(
    command: str, args: tuple[str, ...]
) -> None:
    assert params(command, *args, "--admin-token", "a")["admin_token"] == "a"
    assert params(command, *args, "--token", "b")["admin_token"] == "b"
    assert params(command, *args, env={"FEDGE_ADMIN_TOKEN": "c"})["admin_token"] == "c"


@pytest.mark.parametrize("command", ["serve", "simulate", "demo"])
def test_per_round_by_either_spelling(command: str) -> None:
    assert params(command, "--per-round", "3")["per_round"] == 3
    assert params(command, "--rounds-target", "4")["per_round"] == 4


def test_serve_sends_per_round_as_the_rounds_target() -> None:
    given = params("serve", "--rounds-target", "7", "--rounds-min", "3", "--dp-clip", "1")

    assert server_overrides(given) == {
        "rounds": {"target_participants": 7, "min_participants": 3},
        "dp_clip_norm": 1.0,
    }
    assert server_overrides(params("serve")) == {}


@pytest.mark.parametrize(
    ("command", "hidden", "shown"),
    [
        ("push", "--token", "--admin-token"),
        ("rollback", "--token", "--admin-token"),
        ("serve", "--rounds-target", "--per-round"),
        ("simulate", "--rounds-target", "--per-round"),
    ],
)
def test_old_spellings_stay_out_of_help(command: str, hidden: str, shown: str) -> None:
    result = CliRunner().invoke(main, [command, "--help"])

    assert result.exit_code == 0, result.output
    assert shown in result.output
    assert hidden not in result.output


@pytest.mark.parametrize("command", ["serve", "simulate"])
def test_strategies_come_from_the_registry(command: str) -> None:
    (option,) = [p for p in main.commands[command].params if p.name == "strategy"]

    assert isinstance(option.type, click.Choice)
    assert list(option.type.choices) == list(STRATEGIES)


def test_a_parameter_without_a_field_is_an_error() -> None:
    @dataclass(frozen=True)
    class Record:
        size: int = 0

    assert build_record(Record, {"width": 2}, {"width": "size"}) == Record(size=2)
    with pytest.raises(TypeError, match="no field for height"):
        build_record(Record, {"size": 1, "height": 2})


def test_simulate_builds_the_fleet_config_from_every_option() -> None:
    given = params(
        "simulate",
        *("--server", "http://s", "--admin-token", "t", "--deadline", "5"),
        *("--fault", "nan=2", "--backend", "ray", "--address", "auto", "--rounds-target", "3"),
    )
    for outside in ("engine", "report", "plot"):
        given.pop(outside)

    config = fleet_config(given)

    assert (config.server_url, config.admin_token, config.deadline_s) == ("http://s", "t", 5.0)
    assert (config.faults, config.ray_address, config.per_round) == ({"nan": 2}, "auto", 3)
    assert fleet_config({**given, "server": None}).admin_token is None  # the embedded server's


def test_convert_builds_its_options_from_every_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("model.keras").touch()  # the argument must name a file
    given = params(
        "convert",
        *("model.keras", "--out", "b", "--no-verify", "--no-training", "--quantize", "int8"),
        *("--coreml-target", "iOS17", "--tolerance", "tflite=top1:0.9", "--labels", "a, b"),
        *("--targets", "tflite, coreml", "--custom-objects", "m1,m2:C", "--version", "3"),
    )
    for outside in ("model", "out", "force"):
        given.pop(outside)

    chosen = convert_options(given)

    assert (chosen.verify, chosen.tflite_training, chosen.tflite_quantize) == (False, False, "int8")
    assert chosen.coreml_minimum_target == "iOS17" and chosen.version == "3"
    assert chosen.target_tolerances == {"tflite": Tolerance(min_top1_agreement=0.9)}
    assert (chosen.labels, chosen.targets) == (("a", "b"), ("tflite", "coreml"))
    assert chosen.custom_objects == ("m1", "m2:C")


def test_convert_defaults_are_the_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("model.keras").touch()
    given = params("convert", "model.keras", "--out", "b")
    for outside in ("model", "out", "force"):
        given.pop(outside)

    assert convert_options(given) == ConvertOptions(labels=None)
