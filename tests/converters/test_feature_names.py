"""Feature names in the manifest (``features``): from ``--feature-names``,
else from a samples CSV's header; checked against the model's inputs, and
refused, with what is wrong, when they do not fit (nothing is written)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from fedge.bundle.manifest import open_bundle
from fedge.cli.main import main
from fedge.converters.source.features import (
    check_features,
    feature_names_for,
    parse_feature_names,
    resolve_unnamed,
)
from fedge.errors import ConfigError
from tests.converters.zoo_users import logits_classifier, save

SIX = [f"f{i}" for i in range(6)]
INPUTS = [("features", (None, 6), "float32")]
TWO = [("a", (None, 3), "float32"), ("image", (None, 8, 8, 1), "float32")]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save(logits_classifier(), tmp_path_factory.mktemp("features"))


def test_the_command_records_the_names_in_the_manifest(model_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    names = "age,income,visits,tenure,basket,returns"
    args = ["convert", str(model_path), "--out", str(out), "--targets", "tflite"]
    result = CliRunner().invoke(main, [*args, "--no-training", "--feature-names", names])
    assert result.exit_code == 0, result.output
    manifest = open_bundle(out).manifest
    assert manifest.features == {"features": names.split(",")}
    assert json.loads((out / "manifest.json").read_text())["features"] == manifest.features


def test_wrong_names_are_refused_and_nothing_is_written(model_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    args = ["convert", str(model_path), "--out", str(out), "--targets", "tflite"]
    result = CliRunner().invoke(main, [*args, "--feature-names", "a,b,c"])
    assert result.exit_code == 2
    assert "3 names for input 'features', which takes 6 values" in result.output
    assert not out.exists()


def test_a_csv_header_names_the_features(tmp_path: Path) -> None:
    samples = tmp_path / "s.csv"
    samples.write_text("device," + ",".join(SIX) + ",y\nphone,1,2,3,4,5,6,0\n")
    assert feature_names_for(INPUTS, {}, samples) == {"features": SIX}
    bare = tmp_path / "bare.csv"
    bare.write_text("1,2,3,4,5,6\n")
    assert feature_names_for(INPUTS, {}, bare) == {}
    # Given names win over the header.
    given = {"features": [n.upper() for n in SIX]}
    assert feature_names_for(INPUTS, given, samples) == given


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"nope": SIX}, "no input 'nope'"),
        ({"image": ["x"]}, "names fit a vector input"),
        ({"a": ["x", "", "z"]}, "name 2 of 'a' is empty"),
        ({"a": ["x", "x", "z"]}, "'x' is given twice"),
        ({"a": ["x", "y"]}, "2 names for input 'a', which takes 3 values"),
    ],
)
def test_names_that_do_not_fit_say_why(given: dict[str, list[str]], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_features(TWO, given)


def test_unnamed_names_go_to_the_only_input_and_need_one() -> None:
    parsed = parse_feature_names(["x,y,z"])
    assert resolve_unnamed(TWO[:1], parsed) == {"a": ["x", "y", "z"]}
    with pytest.raises(ConfigError, match="several inputs; write INPUT=a,b,c"):
        resolve_unnamed(TWO, parsed)
    assert parse_feature_names(["a=x, y ,z"]) == {"a": ["x", "y", "z"]}
    with pytest.raises(ConfigError, match="given twice"):
        parse_feature_names(["a=x", "a=y"])
