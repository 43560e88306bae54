"""The bundle's golden samples (:mod:`fedge.bundle.golden`): written by the
converter, read back against the manifest, compared like a device does."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedge.bundle.golden import DOCUMENT, GOLDEN_FILE, compare, read_golden, write_golden
from fedge.bundle.manifest import Manifest, ManifestError, TensorSpec
from fedge.wire.weight_spec import ModelSpec


def manifest_for(path: str | None) -> Manifest:
    documents = {} if path is None else {DOCUMENT: {"path": path, "sha256": "0" * 64, "bytes": 1}}
    return Manifest(
        name="m",
        version="1",
        created="now",
        inputs=(TensorSpec("x", (None, 3), "float32"),),
        outputs=(TensorSpec("probs", (None, 2), "float32"),),
        weights=ModelSpec(()),
        labels=None,
        artifacts={},
        parity={},
        documents=documents,
    )


def written(tmp_path: Path, rows: int = 5) -> Path:
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(rows, 3)).astype(np.float32)
    probs = rng.uniform(size=(rows, 2))
    write_golden(tmp_path, {"x": x}, {"probs": probs}, rows=4)
    return tmp_path / GOLDEN_FILE


def test_golden_samples_round_trip_through_json(tmp_path: Path) -> None:
    path = written(tmp_path)
    golden = read_golden(tmp_path, manifest_for(GOLDEN_FILE))
    assert golden is not None
    assert golden.rows == 4
    assert golden.inputs["x"].dtype == np.float32 and golden.inputs["x"].shape == (4, 3)
    assert golden.outputs["probs"].shape == (4, 2)
    assert json.loads(path.read_text())["format"] == "fedge-golden/1"


def test_a_bundle_without_golden_samples_has_none(tmp_path: Path) -> None:
    assert read_golden(tmp_path, manifest_for(None)) is None


@pytest.mark.parametrize(
    "edit",
    [
        lambda raw: raw.update(format="other"),
        lambda raw: raw["inputs"].pop("x"),
        lambda raw: raw["outputs"]["probs"].update(shape=[4, 3]),
        lambda raw: raw["inputs"]["x"].update(values=[None] * 12),
        lambda raw: raw.update(rows=5000),
        lambda raw: raw["inputs"]["x"].update(shape="abc"),
    ],
)
def test_a_golden_file_that_does_not_fit_the_manifest_is_refused(
    tmp_path: Path, edit: Callable[[dict[str, Any]], object]
) -> None:
    path = written(tmp_path)
    raw = json.loads(path.read_text())
    edit(raw)
    path.write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match="golden"):
        read_golden(tmp_path, manifest_for(GOLDEN_FILE))


def test_non_finite_golden_samples_are_not_written(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="finite"):
        write_golden(tmp_path, {"x": np.array([[np.nan]])}, {"p": np.array([[1.0]])})


def test_compare_gives_the_max_error_and_top1_agreement() -> None:
    want = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    got = np.array([[0.85, 0.15], [0.7, 0.3], [0.6, 0.4]], dtype=np.float32)
    found = compare([want], [got])
    assert found.max_abs_error == pytest.approx(0.5)
    assert found.top1_agreement == pytest.approx(2 / 3)
    assert found.samples == 3
    broken = compare([want], [np.full((3, 2), np.nan)])
    assert broken.max_abs_error == 1e9
