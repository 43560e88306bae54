"""Options of ``fedge convert``: one frozen record, validated once.

Parity tolerances come from three places, most specific first: a bound
for one target (``target_tolerances``, ``--tolerance tflite=1e-3``), a
bound for a precision (``tolerances``, which replaces the defaults only
for the precisions it names), and the defaults below. ``tflite_train`` (the
training artifact's one-step check) is a target of its own: its change of
the weights within 1 % of Keras's (see :mod:`fedge.converters.parity.training`).
"""

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
    ``min_top1_agreement``: share of samples whose arg-max matches Keras;
    ``max_rel_err``: largest absolute difference on an output divided by
    the range of Keras's values of that output over the samples, a bound
    that fits any output, a regressor's as well as a classifier's. For the
    training step (``tflite_train``) the outputs are the weights:
    ``max_abs_err`` bounds the weights after the step, ``max_rel_err`` the
    step's own error, relative to the size of Keras's step.
    """

    max_abs_err: float | None = None
    min_top1_agreement: float | None = None
    max_rel_err: float | None = None


# Defaults by precision: fp32 must match closely; reduced precision by top-1.
# Keys are the precisions :meth:`ConvertOptions.precision` returns.
DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(max_abs_err=1e-4),
    # fp16 keeps about 3 significant digits: within 1 % of the output's range.
    "fp16": Tolerance(max_rel_err=1e-2),
    "dynamic": Tolerance(min_top1_agreement=0.97),
    "int8": Tolerance(min_top1_agreement=0.97),
    "uint8": Tolerance(min_top1_agreement=0.97),
}
# The training artifact: one SGD step against Keras's. Relative to the step's
# size, since a step moves weights by 1e-6 or less and an absolute bound on
# the weights would pass a step that does nothing.
TRAIN_TARGET = "tflite_train"
TRAIN_TOLERANCE = Tolerance(max_rel_err=1e-2)
TOLERANCE_TARGETS: tuple[str, ...] = (*TARGETS, TRAIN_TARGET)

# The losses the TFLite training artifact can take (``--loss``), by their
# Keras names; ``mse`` and ``mae`` are Keras's own short names.
LOSSES: tuple[str, ...] = (
    "sparse_categorical_crossentropy",
    "categorical_crossentropy",
    "binary_crossentropy",
    "mean_squared_error",
    "mean_absolute_error",
)
LOSS_ALIASES: dict[str, str] = {"mse": "mean_squared_error", "mae": "mean_absolute_error"}


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
    # Names of a vector input's values, by input name ("" for the only
    # input); default: a samples CSV's header (converters/source/features.py).
    feature_names: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # A token sequence input's vocabulary (tokens of ids 2, 3, ...), by input
    # name ("" for the only one); converters/source/vocabulary.py.
    vocabularies: dict[str, tuple[str, ...]] = field(default_factory=dict)
    tolerances: dict[str, Tolerance] = field(default_factory=lambda: dict(DEFAULT_TOLERANCES))
    target_tolerances: dict[str, Tolerance] = field(default_factory=dict)
    keep_failed: bool = False
    loss: str | None = None
    from_logits: bool = False
    # Loading the model: modules (MODULE or MODULE:NAME) that give Keras the
    # user's classes, and whether Lambda layers' stored bytecode may be run.
    custom_objects: tuple[str, ...] = ()
    unsafe_deserialization: bool = False

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
        if self.calibration_path is not None and (
            self.tflite_quantize != "int8" or "tflite" not in self.targets
        ):
            raise ConfigError(
                "--calibration is only used by --quantize int8 (TFLite); "
                "add --quantize int8 or leave --calibration out"
            )
        self._validate_tolerances()
        self._validate_loss()

    def _validate_tolerances(self) -> None:
        for precision in self.tolerances:
            if precision not in DEFAULT_TOLERANCES:
                raise ConfigError(
                    f"tolerances: unknown precision {precision!r}; "
                    f"choose from {', '.join(DEFAULT_TOLERANCES)}"
                )
        for target, tolerance in self.target_tolerances.items():
            if target not in TOLERANCE_TARGETS:
                raise ConfigError(
                    f"--tolerance: unknown target {target!r}; "
                    f"choose from {', '.join(TOLERANCE_TARGETS)}"
                )
            _check_bounds(target, tolerance)

    def _validate_loss(self) -> None:
        if self.loss is None:
            if self.from_logits:
                raise ConfigError("--from-logits needs a cross-entropy --loss")
            return
        loss = self.training_loss()
        if loss not in LOSSES:
            names = ", ".join([*LOSSES, *LOSS_ALIASES])
            raise ConfigError(f"--loss: {self.loss!r} is not one of {names}")
        if self.from_logits and not loss.endswith("crossentropy"):
            raise ConfigError("--from-logits needs a cross-entropy --loss")
        if not self.tflite_training or "tflite" not in self.targets:
            raise ConfigError(
                "--loss is only used by the training artifact (TFLite); "
                "leave it out with --no-training or without the tflite target"
            )

    def training_loss(self) -> str | None:
        """``--loss`` under its Keras name (``mse`` is ``mean_squared_error``)."""
        if self.loss is None:
            return None
        return LOSS_ALIASES.get(self.loss, self.loss)

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
        """The bound a target's parity is held to (see the module's docstring)."""
        if target in self.target_tolerances:
            return self.target_tolerances[target]
        if target == TRAIN_TARGET:
            return TRAIN_TOLERANCE
        precision = self.precision(target)
        return self.tolerances.get(precision, DEFAULT_TOLERANCES[precision])


def parse_tolerance(text: str) -> tuple[str, Tolerance]:
    """``TARGET=BOUND`` from the command line: ``tflite=1e-3`` bounds the max
    abs error, ``tflite=top1:0.95`` the top-1 agreement, ``tflite=rel:0.01``
    the error relative to the range of the outputs."""
    target, sep, bound = text.partition("=")
    target = target.strip()
    if not sep or not target or not bound.strip():
        raise ConfigError(
            f"--tolerance takes TARGET=BOUND (e.g. tflite=1e-3 or tflite=top1:0.95); got {text!r}"
        )
    if target not in TOLERANCE_TARGETS:
        raise ConfigError(
            f"--tolerance: unknown target {target!r}; choose from {', '.join(TOLERANCE_TARGETS)}"
        )
    kind, colon, number = bound.strip().rpartition(":")
    if colon and kind not in ("top1", "rel"):
        raise ConfigError(
            f"--tolerance {target}: {kind!r} is not a bound; give a number, top1:N or rel:N"
        )
    try:
        value = float(number)
    except ValueError:
        raise ConfigError(f"--tolerance {target}: {number!r} is not a number") from None
    tolerance = {
        "top1": Tolerance(min_top1_agreement=value),
        "rel": Tolerance(max_rel_err=value),
    }.get(kind, Tolerance(max_abs_err=value))
    _check_bounds(target, tolerance)
    return target, tolerance


def _check_bounds(target: str, tolerance: Tolerance) -> None:
    err, top1 = tolerance.max_abs_err, tolerance.min_top1_agreement
    for bound in (err, tolerance.max_rel_err):
        if bound is not None and not bound >= 0:
            raise ConfigError(f"--tolerance {target}: a bound must be >= 0, got {bound:g}")
    if top1 is not None and not 0 <= top1 <= 1:
        raise ConfigError(f"--tolerance {target}: top-1 agreement must be in [0, 1], got {top1:g}")


def _choice(flag: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{flag} must be one of {', '.join(allowed)}; got {value!r}")
