"""The reference digits model and its bundles, trained and converted once per
test run for all xdist workers (:func:`tests.helpers.shared_cache.build_once`).

Each result is read-only: a test that derives a model or bundle from one
writes it into a temporary directory of its own.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from fedge.converters.bundle import convert
from fedge.converters.options import ConvertOptions
from fedge.reference.train import TrainConfig, train_reference_model
from tests.helpers.shared_cache import build_once


def trained_digits(tmp_path_factory: pytest.TempPathFactory, config: TrainConfig) -> Path:
    """``digits.keras``: the reference CNN trained with ``config``."""

    def build(out: Path) -> None:
        train_reference_model(out / "digits.keras", config, progress=False)

    inputs = dataclasses.asdict(config)
    return build_once(tmp_path_factory, "digits", inputs, build) / "digits.keras"


def digits_bundle(
    tmp_path_factory: pytest.TempPathFactory, config: TrainConfig, options: ConvertOptions
) -> Path:
    """The bundle of :func:`trained_digits` converted with ``options``; the
    model it came from lies next to it (``bundle.parent / "digits.keras"``)."""
    keras = trained_digits(tmp_path_factory, config)

    def build(out: Path) -> None:
        shutil.copy2(keras, out / "digits.keras")
        convert(out / "digits.keras", out / "bundle", options)

    inputs = {"train": dataclasses.asdict(config), "convert": repr(options)}
    return build_once(tmp_path_factory, "digits-bundle", inputs, build) / "bundle"
