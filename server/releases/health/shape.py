"""What a release predicts: how many classes a health histogram must count.

Read from the release's own bundle (the manifest's first output, its last
dimension), not from the devices: a device that reported first must not
decide the shape every other device is held to.
"""

from __future__ import annotations

import json
from pathlib import Path

from fedge.bundle.manifest import MANIFEST_FILE, Manifest


def output_width(bundle_root: Path) -> int | None:
    """The classes of a classifier (>= 2), 1 for a regressor; None when the
    manifest does not say (a free last dimension)."""
    manifest = Manifest.from_json(json.loads((bundle_root / MANIFEST_FILE).read_bytes()))
    if not manifest.outputs or not manifest.outputs[0].shape:
        return None
    return manifest.outputs[0].shape[-1]
