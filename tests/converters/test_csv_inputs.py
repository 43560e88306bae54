"""One CSV convention for every command that reads inputs from a CSV.

``fedge predict``, ``--samples`` and ``--calibration`` take one example per
row; a first row of names is a header (the feature names, as ``simulate``'s
data and ``predict``'s output have one), a first row of numbers is data.
With a header, ``y``/``label`` and ``device`` columns are not features, so
``simulate``'s data file predicts as it is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from click.testing import CliRunner

from fedge.cli.main import main
from fedge.converters.bundle import convert
from fedge.converters.errors import ConversionError
from fedge.converters.options import ConvertOptions
from fedge.converters.parity.samples import load_samples
from tests.converters.zoo_users import logits_classifier, save

ROWS = np.random.default_rng(3).normal(size=(5, 6)).round(4)
NAMES = [f"f{i}" for i in range(6)]


def _write(path: Path, header: list[str] | None, rows: list[list[str]]) -> Path:
    lines = ([",".join(header)] if header else []) + [",".join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _cells(rows: npt.NDArray[np.float64]) -> list[list[str]]:
    return [[f"{v:g}" for v in row] for row in rows]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("csv")
    options = ConvertOptions(targets=("tflite",), tflite_training=False, verify=False)
    convert(save(logits_classifier(), work), work / "bundle", options)
    return work / "bundle"


def _predict(bundle: Path, inputs: Path, out: Path) -> npt.NDArray[np.float32]:
    result = CliRunner().invoke(
        main, ["predict", str(bundle), str(inputs), "--runtime", "tflite", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    predictions: npt.NDArray[np.float32] = np.load(out)
    return predictions


def test_predict_takes_a_csv_with_or_without_a_header_of_feature_names(
    bundle: Path, tmp_path: Path
) -> None:
    bare = _write(tmp_path / "bare.csv", None, _cells(ROWS))
    named = _write(tmp_path / "named.csv", NAMES, _cells(ROWS))

    without = _predict(bundle, bare, tmp_path / "bare.npy")
    with_header = _predict(bundle, named, tmp_path / "named.npy")

    assert without.shape == (5, 3)
    np.testing.assert_array_equal(with_header, without)


def test_simulates_data_csv_predicts_as_it_is(bundle: Path, tmp_path: Path) -> None:
    cells = [["phone-1", *row, "2"] for row in _cells(ROWS)]
    data = _write(tmp_path / "data.csv", ["device", *NAMES, "y"], cells)
    bare = _write(tmp_path / "bare.csv", None, _cells(ROWS))

    np.testing.assert_array_equal(
        _predict(bundle, data, tmp_path / "data.npy"), _predict(bundle, bare, tmp_path / "b.npy")
    )


def test_samples_take_a_header_too(tmp_path: Path) -> None:
    model = logits_classifier()
    named = _write(tmp_path / "named.csv", NAMES, _cells(ROWS))

    samples = load_samples(model, named)

    np.testing.assert_allclose(samples.arrays[0], ROWS.astype(np.float32))


def test_text_under_a_header_names_its_column_and_line(tmp_path: Path) -> None:
    cells = _cells(ROWS)
    cells[1][2] = "n/a"
    named = _write(tmp_path / "named.csv", NAMES, cells)

    with pytest.raises(ConversionError) as caught:
        load_samples(logits_classifier(), named)

    assert str(caught.value) == f"{named}, line 3, column 'f2': 'n/a' is not a number"
