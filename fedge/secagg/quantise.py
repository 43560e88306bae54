"""Clipping and fixed-point integers, the only arithmetic the server sees.

A value x in [-c, c] becomes round((x + c) / 2c * L), L = 2^bits - 1, an
integer in [0, L]. The sum S of m such integers decodes to S * 2c / L - m c,
off by at most m * c / L from the sum of the clipped values.
"""

from __future__ import annotations

import numpy as np

from fedge.secagg.params import SecAggParams


def quantise(values: np.ndarray, params: SecAggParams) -> np.ndarray:
    clipped = np.clip(np.asarray(values, dtype=np.float64), -params.clip, params.clip)
    scaled = np.rint((clipped + params.clip) / (2 * params.clip) * params.levels)
    return scaled.astype(np.uint32)


def dequantise_sum(total: np.ndarray, count: int, params: SecAggParams) -> np.ndarray:
    """The sum of ``count`` clipped inputs, from the sum of their integers."""
    step = 2 * params.clip / params.levels
    return total.astype(np.float64) * step - count * params.clip


def quantisation_error(count: int, params: SecAggParams) -> float:
    """The largest difference per value between the decoded and the exact sum."""
    return count * params.clip / params.levels
