"""Clipping and fixed-point integers, the only arithmetic the server sees.

A value x in [-c, c] becomes round((x + c) / 2c * L), L = 2^bits - 1, an
integer in [0, L]. The sum S of m such integers decodes to S * 2c / L - m c,
off by at most m * c / L from the sum of the clipped values.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from fedge.secagg.params import SecAggParams


def quantise(values: npt.NDArray[Any], params: SecAggParams) -> npt.NDArray[Any]:
    clipped = np.clip(np.asarray(values, dtype=np.float64), -params.clip, params.clip)
    scaled = np.rint((clipped + params.clip) / (2 * params.clip) * params.levels)
    quantised: npt.NDArray[Any] = scaled.astype(np.uint32)
    return quantised


def dequantise_sum(total: npt.NDArray[Any], count: int, params: SecAggParams) -> npt.NDArray[Any]:
    """The sum of ``count`` clipped inputs, from the sum of their integers."""
    step = 2 * params.clip / params.levels
    decoded: npt.NDArray[Any] = total.astype(np.float64) * step - count * params.clip
    return decoded


def quantisation_error(count: int, params: SecAggParams) -> float:
    """The largest difference per value between the decoded and the exact sum."""
    return count * params.clip / params.levels
