"""One interface for every runtime that can run a bundle's model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy.typing as npt


class Predictor(Protocol):
    """Runs a converted model: one array per model input, in the model's
    input order, batch first; returns one array per model output."""

    def predict(self, inputs: Sequence[npt.NDArray[Any]]) -> list[npt.NDArray[Any]]: ...
