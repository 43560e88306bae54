"""Compare a runtime's outputs with Keras's on the same inputs.

The result is the manifest's ``parity.<target>`` record. ``unverified``
means the runtime could not be run here (or could not evaluate some op), or
that the check could not tell it from a constant: Keras's outputs did not
vary over the samples by more than the tolerance (an untrained or saturated
model, or inputs unlike its data). It is never reported as ``pass``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from fedge.converters.options import Tolerance

Status = Literal["pass", "fail", "unverified"]
# What a failed reduced-precision check can try instead, by target.
FULL_PRECISION = {
    "coreml": "--coreml-precision fp32",
    "tflite": "--quantize none",
    "tfjs": "--tfjs-quantize none",
}
Arrays = Sequence[npt.NDArray[Any]]


@dataclass(frozen=True)
class ParityReport:
    status: Status
    samples: int
    max_abs_err: float | None
    top1_agreement: float | None
    tolerance: Tolerance
    precision: str
    reason: str = ""
    accuracy: float | None = None
    inputs: dict[str, Any] | None = None
    max_rel_err: float | None = None

    def to_json(self) -> dict[str, Any]:
        record = asdict(self)
        record["tolerance"] = asdict(self.tolerance)
        return record

    def explain(self, target: str) -> str:
        """One line for the user: which target, which bound, by how much."""
        if self.status == "unverified":
            return f"{target}: parity unverified: {self.reason}"
        if self.status == "pass":
            return f"{target}: parity pass ({self.reason})"
        hint = FULL_PRECISION.get(target) if self.precision != "fp32" else None
        return f"{target}: parity FAILED: {self.reason}" + (
            f"; {hint} converts at full precision" if hint else ""
        )


def compare(
    reference: Arrays, candidate: Arrays, tolerance: Tolerance, precision: str
) -> ParityReport:
    """Max abs error over all outputs; top-1 agreement on the first output."""
    if len(reference) != len(candidate):
        return _failed(
            tolerance, precision, 0, f"{len(candidate)} outputs, Keras has {len(reference)}"
        )
    samples = int(reference[0].shape[0]) if reference and reference[0].ndim else 0
    max_err = 0.0
    for ref, raw in zip(reference, candidate, strict=True):
        got = np.asarray(raw, dtype=np.float64).reshape(np.shape(ref))
        max_err = max(max_err, float(np.max(np.abs(np.asarray(ref, np.float64) - got))))
    if not np.isfinite(max_err):
        return _failed(tolerance, precision, samples, "non-finite outputs")
    top1 = _top1_agreement(reference[0], candidate[0])
    problems = []
    rel_err, rel_abs, rel_range = _worst_relative(reference, candidate)
    if tolerance.max_rel_err is not None and rel_err > tolerance.max_rel_err:
        problems.append(
            f"max abs error {rel_abs:.3g} is {_percent(rel_err)} of the range of Keras's "
            f"outputs ({rel_range:.3g}); the bound is {_percent(tolerance.max_rel_err)}"
        )
    if tolerance.max_abs_err is not None and max_err > tolerance.max_abs_err:
        problems.append(
            f"max abs error {max_err:.3g} > {tolerance.max_abs_err:.3g} "
            f"({max_err / tolerance.max_abs_err:.1f}x the tolerance)"
        )
    if tolerance.min_top1_agreement is not None:
        if top1 is None:
            problems.append("top-1 agreement needs a classifier output (n, classes)")
        elif top1 < tolerance.min_top1_agreement:
            problems.append(
                f"top-1 agreement {top1:.2%} < {tolerance.min_top1_agreement:.2%} "
                f"({(tolerance.min_top1_agreement - top1) * 100:.1f} points short)"
            )
    summary = f"max abs error {max_err:.3g}"
    if tolerance.max_rel_err is not None:
        summary += f" ({_percent(rel_err)} of the output range)"
    summary += f", top-1 {top1:.2%}" if top1 is not None else ""
    if not problems:
        constant = _constant_output(reference, tolerance)
        if constant:
            return ParityReport(
                "unverified",
                samples,
                max_err,
                top1,
                tolerance,
                precision,
                constant,
                max_rel_err=rel_err,
            )
    return ParityReport(
        status="fail" if problems else "pass",
        samples=samples,
        max_abs_err=max_err,
        top1_agreement=top1,
        tolerance=tolerance,
        precision=precision,
        reason="; ".join(problems) if problems else f"{summary} on {samples} samples",
        max_rel_err=rel_err,
    )


def relative_error(reference: Arrays, candidate: Arrays) -> float:
    """The largest absolute error on an output divided by the range (max -
    min) of Keras's values of that output over the samples; the worst output.

    An output whose values do not vary is measured against its largest
    magnitude instead (or 1, if it is all zeros).
    """
    return _worst_relative(reference, candidate)[0]


def _worst_relative(reference: Arrays, candidate: Arrays) -> tuple[float, float, float]:
    """(relative error, its absolute error, its output's range) of the worst output."""
    worst = (0.0, 0.0, 1.0)
    for ref, raw in zip(reference, candidate, strict=True):
        values = np.asarray(ref, np.float64)
        if not values.size:
            continue
        error = float(np.max(np.abs(values - np.asarray(raw, np.float64).reshape(values.shape))))
        scale = float(np.ptp(values)) or float(np.max(np.abs(values))) or 1.0
        if error / scale > worst[0]:
            worst = (error / scale, error, scale)
    return worst


def _percent(fraction: float) -> str:
    return f"{fraction * 100:.2g}%"


def unverified(tolerance: Tolerance, precision: str, reason: str) -> ParityReport:
    return ParityReport(
        status="unverified",
        samples=0,
        max_abs_err=None,
        top1_agreement=None,
        tolerance=tolerance,
        precision=precision,
        reason=reason,
    )


def _failed(tolerance: Tolerance, precision: str, samples: int, reason: str) -> ParityReport:
    return ParityReport("fail", samples, None, None, tolerance, precision, reason)


def _constant_output(reference: Arrays, tolerance: Tolerance) -> str:
    """Why parity on these outputs proves nothing, or "": an output whose
    values spread over the samples by no more than the tolerance (or than
    float32 rounding) is matched by any constant within it."""
    rows = int(reference[0].shape[0]) if reference[0].ndim else 0
    if rows < 2:
        return ""
    for index, output in enumerate(reference):
        values = np.asarray(output, np.float64).reshape(rows, -1)
        spread = float(np.max(np.ptp(values, axis=0))) if values.size else 0.0
        bound = max(tolerance.max_abs_err or 0.0, 1e-6 * max(1.0, float(np.max(np.abs(values)))))
        if spread <= bound:
            return (
                f"Keras's output {index} does not vary over the {rows} samples "
                f"(spread {spread:.3g} <= {bound:.3g}): any constant would agree; "
                "check the model (untrained?) or give --samples"
            )
    return ""


def _top1_agreement(reference: npt.NDArray[Any], candidate: npt.NDArray[Any]) -> float | None:
    ref = np.asarray(reference)
    if ref.ndim != 2 or ref.shape[1] < 2:
        return None
    got = np.asarray(candidate).reshape(ref.shape)
    return float(np.mean(ref.argmax(axis=1) == got.argmax(axis=1)))
