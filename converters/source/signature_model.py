"""A plain SavedModel (not Keras) as a source model: its serving signature.

A ``tf.Module`` saved with ``signatures={"serving_default": f}`` has no
layers, no Keras config and no training setup; what it has is one function
with named inputs and named outputs. fedge converts that function: to
TFLite (``from_saved_model``), to a TF.js graph model, and keeps the
SavedModel itself in the bundle as the parity reference (the signature is
what every runtime is checked against).

Inputs and outputs are ordered by name, as TFLite orders a signature's.
The weights are the variables the signature captures, named as TensorFlow
names them (a repeated name gets ``_1``, ``_2``...).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fedge.converters.errors import ModelLoadError
from fedge.wire.weight_spec import variable_name

SIGNATURE = "serving_default"
BATCH_ROWS = 256
Spec = tuple[str, tuple[int | None, ...], str]


@dataclass(frozen=True)
class NamedWeight:
    """A captured variable as :meth:`ModelSpec.from_keras` reads it."""

    name: str
    shape: tuple[int, ...]
    dtype: str


class SignatureModel:
    """The serving signature of a SavedModel that Keras did not write.

    It offers what the bundle asks of a source model (``name``,
    ``weights``, ``get_weights``, ``count_params``) and runs as the
    reference (``predict``, the :class:`~fedge.converters.parity.predictor.Predictor`
    interface).
    """

    def __init__(self, path: Path, loaded: Any, signature: str = SIGNATURE) -> None:
        self.path = path
        self.signature = signature
        self.name = path.name
        self._loaded = loaded  # keeps the variables alive
        self.function = loaded.signatures[signature]
        _, inputs = self.function.structured_input_signature
        outputs = self.function.structured_outputs
        if not isinstance(outputs, dict):
            outputs = {"output_0": outputs}
        self.input_specs: list[Spec] = [_spec(name, inputs[name]) for name in sorted(inputs)]
        self.output_specs: list[Spec] = [_spec(name, outputs[name]) for name in sorted(outputs)]

    @classmethod
    def load(cls, path: Path, signature: str = SIGNATURE) -> SignatureModel:
        import tensorflow as tf

        try:
            loaded = tf.saved_model.load(str(path))
        except Exception as exc:  # TensorFlow raises many types for broken SavedModels
            raise ModelLoadError(f"could not load {path}: {type(exc).__name__}: {exc}") from exc
        signatures = sorted(getattr(loaded, "signatures", {}) or {})
        if signature not in signatures:
            raise ModelLoadError(
                f"{path} is a SavedModel without a {signature!r} signature "
                f"(it has: {', '.join(signatures) or 'none'}); save it with "
                f"tf.saved_model.save(module, path, signatures={{{signature!r}: module.f}})"
            )
        return cls(path, loaded, signature)

    @property
    def weights(self) -> list[NamedWeight]:
        taken: dict[str, int] = {}
        named = []
        for variable in self.function.variables:
            base = variable_name(variable)
            count = taken.get(base, 0)
            taken[base] = count + 1
            named.append(
                NamedWeight(
                    name=f"{base}_{count}" if count else base,
                    shape=tuple(int(d) for d in variable.shape),
                    dtype=variable.dtype.as_numpy_dtype.__name__,
                )
            )
        return named

    def get_weights(self) -> list[npt.NDArray[Any]]:
        return [np.asarray(variable.numpy()) for variable in self.function.variables]

    def count_params(self) -> int:
        return sum(int(np.prod(w.shape)) for w in self.weights)

    def predict(self, inputs: Sequence[npt.NDArray[Any]]) -> list[npt.NDArray[Any]]:
        """The signature on ``inputs`` (in :attr:`input_specs` order), a few
        hundred rows at a time, or its fixed batch at a time."""
        import tensorflow as tf

        if len(inputs) != len(self.input_specs):
            raise ValueError(f"{len(inputs)} inputs for {len(self.input_specs)}")
        fixed = self.input_specs[0][1][0] if self.input_specs[0][1] else None
        step = fixed or BATCH_ROWS
        rows = int(np.shape(inputs[0])[0])
        parts: list[list[npt.NDArray[Any]]] = [[] for _ in self.output_specs]
        for start in range(0, rows, step):
            chunk = [np.asarray(x[start : start + step]) for x in inputs]
            taken = int(chunk[0].shape[0])
            if fixed and taken < fixed:  # pad the last chunk to the fixed batch
                chunk = [np.concatenate([c, np.repeat(c[-1:], fixed - taken, 0)]) for c in chunk]
            feed = {
                name: tf.constant(x, dtype=dtype)
                for (name, _, dtype), x in zip(self.input_specs, chunk, strict=True)
            }
            result = self.function(**feed)
            if not isinstance(result, dict):
                result = {"output_0": result}
            for part, (name, _, _) in zip(parts, self.output_specs, strict=True):
                part.append(np.asarray(result[name])[:taken])
        return [np.concatenate(part) for part in parts]


def _spec(name: str, tensor: Any) -> Spec:
    shape = tuple(None if d is None else int(d) for d in tensor.shape)
    return name, shape, tensor.dtype.name
