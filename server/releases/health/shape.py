"""What a release predicts: how many classes a health histogram must count.

Read from the release's own bundle (the manifest's first output, its last
dimension), not from the devices: a device that reported first must not
decide the shape every other device is held to.
"""

from __future__ import annotations

import json
from pathlib import Path

from fedge.bundle.manifest import MANIFEST_FILE, Manifest
from fedge.server.errors import BadRequest


def output_width(bundle_root: Path) -> int | None:
    """The classes of a classifier (>= 2), 1 for a regressor; None when the
    manifest does not say (a free last dimension)."""
    manifest = Manifest.from_json(json.loads((bundle_root / MANIFEST_FILE).read_bytes()))
    if not manifest.outputs or not manifest.outputs[0].shape:
        return None
    return manifest.outputs[0].shape[-1]


def check_shape(
    version: int,
    histogram: tuple[int, ...] | None,
    quantiles: tuple[float, ...] | None,
    width: int | None,
    code: str,
) -> None:
    """A :class:`BadRequest` (``code``) unless the predictions fit the
    release's output: quantiles for a regressor, a histogram of exactly its
    classes for a classifier (nothing is checked when the width is unknown)."""
    if width is None:
        return
    if width == 1 and quantiles is None:
        raise BadRequest(f"release {version} is a regressor: report quantiles", code=code)
    if width > 1 and (histogram is None or len(histogram) != width):
        raise BadRequest(
            f"release {version} predicts {width} classes: the histogram has {width} counts",
            code=code,
        )
