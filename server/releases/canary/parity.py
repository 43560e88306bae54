"""Parity on the devices' own runtimes (issue 23): which runtimes a
release is kept off.

A canary device runs the bundle's golden inputs on the runtime it uses
(TFLite in the simulator, TF.js on a page's backend) and reports the
largest absolute difference from the source model's outputs and the share
of samples whose top-1 class agrees (:class:`fedge.wire.canary.Parity`).
One report fails when its error is above ``max_error`` or its agreement
below ``min_agreement`` (:class:`ParityRule`, the ``canary_parity_*``
settings): the defaults are wide enough for float32 runtimes (TFLite and
TF.js agree with Keras to about 1e-5 on the digits) and tight enough that
altered weights fail.

A wrong result on a device's own runtime is evidence, but one lying device
must not keep a release off a runtime for everyone: a runtime fails when at
least ``min_devices`` distinct counted devices report failure and they
are a majority of that runtime's counted reporters. The numbers shown per
runtime are medians over its devices, which a minority cannot move far.
Pure functions over the counted evaluations.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from fedge.server.parity_rule import ParityRule
from fedge.wire.canary import Evaluation, Parity


@dataclass(frozen=True)
class RuntimeParity:
    """One runtime's parity reports: ``devices`` that reported parity,
    ``failing`` among them, the median ``max_error`` and ``agreement``,
    and whether the release may go to this runtime's devices (``ok``)."""

    devices: int
    failing: int
    max_error: float
    agreement: float
    ok: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def fails(parity: Parity, rule: ParityRule) -> bool:
    """Whether one device's parity report is a failure."""
    return parity.max_abs_error > rule.max_error or parity.top1_agreement < rule.min_agreement


def by_runtime(evaluations: Iterable[Evaluation], rule: ParityRule) -> dict[str, RuntimeParity]:
    """Each runtime's parity over the counted evaluations that carry one."""
    found: dict[str, list[Parity]] = {}
    for evaluation in evaluations:
        if evaluation.runtime is not None and evaluation.parity is not None:
            found.setdefault(evaluation.runtime, []).append(evaluation.parity)
    shown = {}
    for runtime, reports in sorted(found.items()):
        failing = sum(fails(p, rule) for p in reports)
        shown[runtime] = RuntimeParity(
            devices=len(reports),
            failing=failing,
            max_error=statistics.median(p.max_abs_error for p in reports),
            agreement=statistics.median(p.top1_agreement for p in reports),
            ok=not (failing >= rule.min_devices and 2 * failing > len(reports)),
        )
    return shown


def failed(evaluations: Iterable[Evaluation], rule: ParityRule) -> set[str]:
    """The runtimes the release is kept off."""
    return {runtime for runtime, found in by_runtime(evaluations, rule).items() if not found.ok}
