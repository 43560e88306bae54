"""Examples for any model: named inputs and labels, as devices hold them.

The reference task's :class:`fedge.reference.data.Split` has one image array; a
user's model may take several named inputs and learn class ids or float
targets. :class:`Examples` carries either: ``x`` maps each of the model's
input names to an array whose first axis is the example, ``y`` holds class
ids (int64, ``(n,)``) or float32 targets (``(n, ...)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fedge.reference.data import Split

FloatArray = npt.NDArray[np.float32]
Labels = npt.NDArray[Any]
Index = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Examples:
    x: dict[str, FloatArray]
    y: Labels

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def take(self, indices: Index) -> Examples:
        return Examples(x={name: a[indices] for name, a in self.x.items()}, y=self.y[indices])

    @classmethod
    def of_split(cls, split: Split, input_name: str) -> Examples:
        """The reference task's images under the model's input name."""
        return cls(x={input_name: split.x}, y=split.y)

    @classmethod
    def concat(cls, parts: list[Examples]) -> Examples:
        if not parts:
            raise ValueError("no examples to concatenate")
        names = list(parts[0].x)
        return cls(
            x={name: np.concatenate([p.x[name] for p in parts]) for name in names},
            y=np.concatenate([p.y for p in parts]),
        )


@dataclass(frozen=True)
class DeviceExamples:
    """What stays on one device: the part it trains on and its own held-out part."""

    train: Examples
    holdout: Examples
