"""A device population that changes how its data looks: "a new handwriting style".

The simulator's way to show drift in production: the same devices, the
same labels, but images drawn differently, so the live model sees inputs
unlike those it was trained on. Styles:

========  ===============================================================
invert    light strokes on a dark page become dark on light: ``lo + hi - x``
          over the batch's own value range
shift     every image moved ``2`` pixels right (wrapping), as if written
          off-centre; needs images (``(n, height, width[, channels])``)
========  ===============================================================
"""

from __future__ import annotations

import numpy as np

from fedge.errors import ConfigError
from fedge.task.examples import Examples, FloatArray

STYLES = ("invert", "shift")
SHIFT_PIXELS = 2


def restyle(examples: Examples, style: str) -> Examples:
    """The same examples (and labels) in another style."""
    if style not in STYLES:
        raise ConfigError(f"a style is one of {', '.join(STYLES)}, not {style!r}")
    return Examples(x={name: _restyled(a, style) for name, a in examples.x.items()}, y=examples.y)


def _restyled(images: FloatArray, style: str) -> FloatArray:
    if style == "invert":
        lo, hi = float(images.min()), float(images.max())
        return np.asarray(lo + hi - images, dtype=images.dtype)
    if images.ndim < 3:
        raise ConfigError(f"shift needs images (n, height, width[, channels]), not {images.shape}")
    return np.roll(images, SHIFT_PIXELS, axis=2)
