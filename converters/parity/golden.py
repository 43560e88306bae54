"""The parity samples ``fedge convert`` puts in every bundle (issue 23).

The first :data:`fedge.bundle.golden.ROWS` parity samples and the source
(Keras) model's outputs on them, in ``parity/golden.json`` (format:
:mod:`fedge.bundle.golden`), listed in the manifest's documents so the
bundle's seal covers them: canary devices run them on their own runtime.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fedge.bundle.golden import DOCUMENT, write_golden
from fedge.bundle.manifest import Manifest
from fedge.converters.artifact import describe_files
from fedge.converters.parity.samples import SampleSet


def add_golden(bundle_dir: Path, manifest: Manifest, samples: SampleSet, reference: Any) -> bool:
    """Write the golden samples and list them in ``manifest``; False (and
    nothing written) when the source model's outputs are not finite: a
    device could not compare with them."""
    inputs = {s.name: a for s, a in zip(manifest.inputs, samples.arrays, strict=True)}
    outputs = {s.name: np.asarray(a) for s, a in zip(manifest.outputs, reference, strict=True)}
    if not all(np.all(np.isfinite(a)) for a in outputs.values()):
        return False
    path = write_golden(bundle_dir, inputs, outputs)
    (document,) = describe_files(bundle_dir, [path])
    manifest.documents[DOCUMENT] = vars(document)
    return True
