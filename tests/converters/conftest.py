"""Fixtures for converter tests: a trained reference model on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedge.reference.train import TrainConfig
from tests.helpers.shared_models import trained_digits


@pytest.fixture(scope="session")
def trained_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference CNN trained for a few epochs (about 0.95 test accuracy)."""
    return trained_digits(tmp_path_factory, TrainConfig(epochs=8, seed=0))
