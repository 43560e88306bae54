"""Options of ``fedge convert``: one frozen record, validated once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fedge.errors import ConfigError

TARGETS: tuple[str, ...] = ("tflite", "tfjs", "coreml")
TFLITE_QUANTIZATIONS: tuple[str, ...] = ("none", "fp16", "dynamic", "int8")
TFJS_QUANTIZATIONS: tuple[str, ...] = ("none", "float16", "uint8")
COREML_PRECISIONS: tuple[str, ...] = ("fp16", "fp32")
COREML_TARGETS: tuple[str, ...] = (
    "iOS15",
    "iOS16",
    "iOS17",
    "iOS18",
    "macOS12",
    "macOS13",
    "macOS14",
    "macOS15",
)


@dataclass(frozen=True)
class Tolerance:
    """Parity passes when every given bound holds.

    ``max_abs_err``: largest absolute difference from Keras on any output;
    ``min_top1_agreement``: share of samples whose arg-max matches Keras.
    """

    max_abs_err: float | None = None
    min_top1_agreement: float | None = None


# Defaults by precision: fp32 must match closely; reduced precision by top-1.
DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(max_abs_err=1e-4),
    "fp16": Tolerance(min_top1_agreement=0.99),
    "dynamic": Tolerance(min_top1_agreement=0.97),
    "int8": Tolerance(min_top1_agreement=0.97),
    "uint8": Tolerance(min_top1_agreement=0.97),
}


@dataclass(frozen=True)
class ConvertOptions:
    targets: tuple[str, ...] = TARGETS
    tflite_quantize: str = "none"
    tflite_training: bool = True
    tfjs_quantize: str = "none"
    tfjs_shard_bytes: int = 4 * 1024 * 1024
    coreml_precision: str = "fp16"
    coreml_minimum_target: str = "iOS16"
    strict: bool = False
    verify: bool = True
    samples_path: Path | None = None
    calibration_path: Path | None = None
    max_samples: int = 512
    seed: int = 0
    name: str | None = None
    version: str = "1"
    author: str = "fedge"
    description: str = ""
    labels: tuple[str, ...] | None = None
    tolerances: dict[str, Tolerance] = field(default_factory=lambda: dict(DEFAULT_TOLERANCES))

    def validate(self) -> None:
        unknown = [t for t in self.targets if t not in TARGETS]
        if unknown or not self.targets:
            raise ConfigError(
                f"unknown target(s) {unknown}; choose from {', '.join(TARGETS)}"
                if unknown
                else "no target given"
            )
        _choice("--quantize", self.tflite_quantize, TFLITE_QUANTIZATIONS)
        _choice("--tfjs-quantize", self.tfjs_quantize, TFJS_QUANTIZATIONS)
        _choice("--coreml-precision", self.coreml_precision, COREML_PRECISIONS)
        _choice("--coreml-target", self.coreml_minimum_target, COREML_TARGETS)
        if self.tfjs_shard_bytes < 1024:
            raise ConfigError(f"shard size must be >= 1024 bytes, got {self.tfjs_shard_bytes}")
        if self.max_samples < 1:
            raise ConfigError(f"max_samples must be >= 1, got {self.max_samples}")
        for path in (self.samples_path, self.calibration_path):
            if path is not None and not path.is_file():
                raise ConfigError(f"no such file: {path}")

    def precision(self, target: str) -> str:
        """The numeric precision a target runs at, which picks its tolerance."""
        if target == "tflite":
            return {"none": "fp32"}.get(self.tflite_quantize, self.tflite_quantize)
        if target == "tfjs":
            return {"none": "fp32", "float16": "fp16"}.get(self.tfjs_quantize, self.tfjs_quantize)
        if target == "coreml":
            return self.coreml_precision
        return "fp32"

    def tolerance(self, target: str) -> Tolerance:
        return self.tolerances[self.precision(target)]


def _choice(flag: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{flag} must be one of {', '.join(allowed)}; got {value!r}")
