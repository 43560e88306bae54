"""Running a bundle's TFLite model for ``POST /v1/models/{name}/predict``.

TensorFlow is imported on the first prediction, not when the server starts
(a server that only federates never loads it). A ``tf.lite.Interpreter`` is
not thread-safe and waitress answers requests on several threads, so each
request borrows an interpreter of its own from a pool: an idle one, or a
new one when all are busy. The pool therefore holds at most as many as
there were concurrent predictions: at most ``predict_concurrency``, since a
request takes a slot of :attr:`ServingModels.slots` before it runs (and a
device at most ``predict_per_device``; past either the view answers 429 at
once). The signature runner resizes the input tensors to each request's batch.

One :class:`ServingModels` per app keeps the model of one bundle at a time:
when the bundle to serve changes (a new live release), the old one's
interpreters are dropped once the requests using them are done.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy.typing as npt

from fedge.bundle.manifest import Manifest, ManifestError, open_bundle
from fedge.converters.batch_predict import run_predictor
from fedge.converters.errors import BadInputError
from fedge.converters.parity.predictor import Predictor
from fedge.server.devices.slots import ClientSlots
from fedge.server.errors import NotFound, ServerError, Unprocessable

Array = npt.NDArray[Any]
TARGET = "tflite"
# What run_predictor's messages call the inputs ("tflite could not run on the request").
_SOURCE = Path("the request")


class InterpreterPool:
    """Predictors of one model, each used by one request at a time."""

    def __init__(self, build: Callable[[], Predictor]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._idle: list[Predictor] = []

    @contextmanager
    def borrowed(self) -> Iterator[Predictor]:
        with self._lock:
            predictor = self._idle.pop() if self._idle else None
        if predictor is None:
            predictor = self._build()
        try:
            yield predictor
        finally:
            with self._lock:
                self._idle.append(predictor)


@dataclass(frozen=True)
class ServedModel:
    """A verified bundle's manifest and the pool that runs its TFLite model."""

    bundle_id: str
    manifest: Manifest
    pool: InterpreterPool = field(compare=False)

    def predict(self, inputs: Sequence[Array]) -> dict[str, Array]:
        """The outputs by name. A failure on integer inputs (a token id
        outside an embedding) is the request's fault: a 422."""
        try:
            with self.pool.borrowed() as predictor:
                outputs = run_predictor(predictor, TARGET, list(inputs), self.manifest, _SOURCE)
        except BadInputError as exc:  # as `fedge predict` tells it; other failures are 500s
            raise Unprocessable(str(exc), code="prediction_failed") from exc
        names = [spec.name for spec in self.manifest.outputs]
        return dict(zip(names, outputs, strict=True))


class ServingModels:
    """The model of the bundle being served, loaded on first use, and who
    may run it now (``slots``: predictions at once, in all and per device)."""

    def __init__(self, slots: ClientSlots | None = None) -> None:
        self._lock = threading.Lock()
        self._current: ServedModel | None = None
        self.slots = slots if slots is not None else ClientSlots(4, 2)

    def model(self, bundle_id: str, bundle_dir: Path) -> ServedModel:
        """The served model of this bundle (checked against its id once)."""
        with self._lock:
            current = self._current
            if current is None or current.bundle_id != bundle_id:
                current = _load(bundle_id, bundle_dir)
                self._current = current
            return current


def _load(bundle_id: str, bundle_dir: Path) -> ServedModel:
    """The bundle's manifest, checked file by file against the id; no TensorFlow yet."""
    try:
        manifest = open_bundle(bundle_dir, expected_id=bundle_id).manifest
    except ManifestError as exc:
        raise ServerError(f"the served bundle {bundle_id[:12]} is damaged: {exc}") from exc
    if TARGET not in manifest.artifacts:
        raise NotFound(
            f"bundle {bundle_id[:12]} has no TFLite model to run; convert it with "
            "`fedge convert --targets tflite` and push it",
            code="no_tflite",
        )
    record = manifest.artifacts[TARGET]

    def build() -> Predictor:
        from fedge.converters.targets.tflite import load_predictor  # imports TensorFlow

        return load_predictor(bundle_dir, record)

    return ServedModel(bundle_id, manifest, InterpreterPool(build))
