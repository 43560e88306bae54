"""What the devices said about their own training, summed up per round.

Each update carries a few ``metrics`` the device measured (Python devices
send their training ``loss`` and, for a classifier, ``accuracy`` on their
held-out data; browsers send loss and accuracy). When a round closes their
weighted mean goes into the round's metrics as ``device_<name>``, which is
what the dashboard charts over rounds.

A device's weight is the one its delta had in the aggregate (its
``num_examples``, capped; 1 under central DP), so the mean tells about the
same devices, weighed the same way, as the new checkpoint. Plain functions,
no server dependency.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

PREFIX = "device_"
# Each update may name a few metrics of its own: a round keeps those that
# the most devices reported, so that one device cannot bloat every round.
MAX_NAMES = 8


def weighted_device_metrics(
    reports: Iterable[tuple[float, object]],
) -> dict[str, float]:
    """``{"device_<name>": mean}`` over ``(weight, metrics)`` reports.

    Each metric is averaged over the devices that reported it (a device
    that did not send ``accuracy`` does not count as 0). Values that are
    not finite numbers, reports of weight <= 0 and reports that are not
    objects are left out.
    """
    sums: dict[str, float] = {}
    weights: dict[str, float] = {}
    reporters: dict[str, int] = {}
    for weight, metrics in reports:
        if not (math.isfinite(weight) and weight > 0) or not isinstance(metrics, Mapping):
            continue
        for name, value in metrics.items():
            number = _finite_number(value)
            if number is None:
                continue
            sums[name] = sums.get(name, 0.0) + weight * number
            weights[name] = weights.get(name, 0.0) + weight
            reporters[name] = reporters.get(name, 0) + 1
    kept = sorted(reporters, key=lambda name: (-reporters[name], name))[:MAX_NAMES]
    return {f"{PREFIX}{name}": sums[name] / weights[name] for name in sorted(kept)}


def _finite_number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None
