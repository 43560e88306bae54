"""What a federated model is scored on: its bundle's loss, and one headline metric.

The loss is the one the TFLite training artifact minimises (the bundle's
``training`` record: the model's compiled loss, or ``--loss``), computed
here with NumPy as Keras computes it (the batch mean, probabilities
clipped to ``1e-7``). The headline metric follows from the loss: a
classifier (a cross-entropy) is scored by accuracy, a regressor (mean
squared or absolute error) by its mean absolute error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

_EPSILON = 1e-7
CLASS_IDS = "sparse_categorical_crossentropy"
CLASSIFICATION_LOSSES = (CLASS_IDS, "categorical_crossentropy", "binary_crossentropy")
REGRESSION_LOSSES = ("mean_squared_error", "mean_absolute_error")


@dataclass(frozen=True)
class Objective:
    loss: str
    from_logits: bool = False

    @classmethod
    def from_training(cls, record: dict[str, Any]) -> Objective:
        """From a bundle's TFLite ``training`` record."""
        loss = str(record["loss"])
        if loss not in (*CLASSIFICATION_LOSSES, *REGRESSION_LOSSES):
            raise ValueError(f"unknown training loss {loss!r}")
        return cls(loss=loss, from_logits=bool(record.get("from_logits", False)))

    @property
    def is_classifier(self) -> bool:
        return self.loss in CLASSIFICATION_LOSSES

    @property
    def takes_class_ids(self) -> bool:
        """Labels are class ids (int), not targets shaped like the output."""
        return self.loss == CLASS_IDS

    @property
    def metric(self) -> str:
        """The headline metric's name."""
        return "accuracy" if self.is_classifier else "mae"

    @property
    def higher_is_better(self) -> bool:
        return self.is_classifier

    def at_least_as_good(self, score: float, than: float) -> bool:
        """``score`` is no worse than ``than`` (a NaN ``than`` never wins)."""
        if np.isnan(than):
            return True
        return score >= than if self.higher_is_better else score <= than

    def evaluate(self, outputs: npt.NDArray[Any], labels: npt.NDArray[Any]) -> dict[str, float]:
        """``{"loss": ..., metric: ...}`` of the model's outputs on ``labels``;
        NaN for no examples."""
        if len(labels) == 0:
            return {"loss": float("nan"), self.metric: float("nan")}
        outputs = np.asarray(outputs, dtype=np.float64)
        return {"loss": self._loss(outputs, labels), self.metric: self._metric(outputs, labels)}

    def _loss(self, outputs: npt.NDArray[np.float64], labels: npt.NDArray[Any]) -> float:
        if self.loss == CLASS_IDS:
            log_p = _log_probs(outputs, self.from_logits)
            ids = labels.astype(np.int64).reshape(len(labels), -1)[:, 0]
            return float(-np.mean(log_p[np.arange(len(ids)), ids]))
        y = np.asarray(labels, dtype=np.float64).reshape(outputs.shape)
        if self.loss == "categorical_crossentropy":
            return float(-np.mean(np.sum(y * _log_probs(outputs, self.from_logits), axis=-1)))
        if self.loss == "binary_crossentropy":
            p = _sigmoid(outputs) if self.from_logits else outputs
            p = np.clip(p, _EPSILON, 1 - _EPSILON)
            return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
        if self.loss == "mean_absolute_error":
            return float(np.mean(np.abs(y - outputs)))
        return float(np.mean((y - outputs) ** 2))

    def _metric(self, outputs: npt.NDArray[np.float64], labels: npt.NDArray[Any]) -> float:
        if self.loss == CLASS_IDS:
            ids = labels.astype(np.int64).reshape(len(labels), -1)[:, 0]
            return float(np.mean(outputs.argmax(axis=-1) == ids))
        y = np.asarray(labels, dtype=np.float64).reshape(outputs.shape)
        if self.loss == "categorical_crossentropy":
            return float(np.mean(outputs.argmax(axis=-1) == y.argmax(axis=-1)))
        if self.loss == "binary_crossentropy":
            threshold = 0.0 if self.from_logits else 0.5
            return float(np.mean((outputs > threshold) == (y > 0.5)))
        return float(np.mean(np.abs(y - outputs)))


def _log_probs(outputs: npt.NDArray[np.float64], from_logits: bool) -> npt.NDArray[np.float64]:
    if from_logits:
        shifted = outputs - outputs.max(axis=-1, keepdims=True)
        result: npt.NDArray[np.float64] = shifted - np.log(
            np.exp(shifted).sum(axis=-1, keepdims=True)
        )
        return result
    p = outputs / np.clip(outputs.sum(axis=-1, keepdims=True), _EPSILON, None)
    logs: npt.NDArray[np.float64] = np.log(np.clip(p, _EPSILON, 1 - _EPSILON))
    return logs


def _sigmoid(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    result: npt.NDArray[np.float64] = 1.0 / (1.0 + np.exp(-x))
    return result
