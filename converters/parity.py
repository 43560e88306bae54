"""Compare a runtime's outputs with Keras's on the same inputs.

The result is the manifest's ``parity.<target>`` record. ``unverified``
means the runtime could not be run here (or could not evaluate some op):
it is never reported as ``pass``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from fedge.converters.options import Tolerance

Status = Literal["pass", "fail", "unverified"]
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
        return f"{target}: parity FAILED: {self.reason}"


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
    summary = f"max abs error {max_err:.3g}" + (f", top-1 {top1:.2%}" if top1 is not None else "")
    return ParityReport(
        status="fail" if problems else "pass",
        samples=samples,
        max_abs_err=max_err,
        top1_agreement=top1,
        tolerance=tolerance,
        precision=precision,
        reason="; ".join(problems) if problems else f"{summary} on {samples} samples",
    )


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


def _top1_agreement(reference: npt.NDArray[Any], candidate: npt.NDArray[Any]) -> float | None:
    ref = np.asarray(reference)
    if ref.ndim != 2 or ref.shape[1] < 2:
        return None
    got = np.asarray(candidate).reshape(ref.shape)
    return float(np.mean(ref.argmax(axis=1) == got.argmax(axis=1)))
