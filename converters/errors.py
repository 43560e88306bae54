"""Errors of the converters: each names what failed and where."""

from __future__ import annotations

from fedge.errors import FedgeError


class ConversionError(FedgeError):
    """A conversion could not be done."""


class ModelLoadError(ConversionError):
    """The input model is missing, corrupt or not a Keras 2 model."""


class UnsupportedLayerError(ConversionError):
    """A target cannot take one of the model's layers."""

    def __init__(self, target: str, layer: str, layer_type: str, detail: str = "") -> None:
        self.target = target
        self.layer = layer
        self.layer_type = layer_type
        message = f"{target}: layer {layer!r} ({layer_type}) is not supported"
        super().__init__(f"{message}: {detail}" if detail else message)


class TargetFailedError(ConversionError):
    """A target's converter failed for a reason other than a named layer."""

    def __init__(self, target: str, detail: str) -> None:
        self.target = target
        self.detail = detail
        super().__init__(f"{target}: conversion failed: {detail}")


class UnsupportedOpError(ConversionError):
    """The NumPy MIL evaluator has no implementation for an op (parity: unverified)."""

    def __init__(self, op_type: str, op_name: str = "") -> None:
        self.op_type = op_type
        super().__init__(f"MIL op {op_type!r} {op_name} is not supported by the NumPy evaluator")


class RuntimeUnavailableError(ConversionError):
    """A runtime needed for parity or prediction is not installed here."""


class BundleError(ConversionError):
    """A bundle on disk is missing files, has wrong hashes or a bad manifest."""


class BadInputError(ConversionError):
    """``fedge predict`` cannot use what it was given (the input file's
    values, ``--out``): the user's to fix, an exit status of 2."""


class PredictionError(ConversionError):
    """A runtime failed while predicting, for a reason other than its inputs."""
