"""Fixtures for converter tests: a trained reference model on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedge.reference.train import TrainConfig, train_reference_model


@pytest.fixture(scope="session")
def trained_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference CNN trained for a few epochs (about 0.95 test accuracy)."""
    out = tmp_path_factory.mktemp("trained") / "digits.keras"
    train_reference_model(out, TrainConfig(epochs=8, seed=0), progress=False)
    return out
