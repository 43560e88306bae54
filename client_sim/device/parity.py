"""A simulated device's parity check on the runtime it uses (issue 23).

The device runs the candidate bundle's golden inputs
(:mod:`fedge.bundle.golden`) on its TFLite interpreter, the same
``train.tflite`` ``infer`` it serves with, and compares them with the source
model's outputs the converter stored: what it reports with its canary
evaluation. A bundle without golden samples (made before they existed),
or with a golden file that does not fit its manifest, reports no parity:
the evaluation still goes out.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from fedge.bundle.golden import compare, read_golden
from fedge.bundle.manifest import MANIFEST_FILE, Manifest, ManifestError
from fedge.client_sim.device.trainers import Trainer
from fedge.wire.canary import Parity

log = logging.getLogger("fedge.client_sim")

RUNTIME = "tflite"  # what the simulator's devices run models on


def golden_parity(bundle_dir: Path, runtime: Trainer) -> Parity | None:
    """The bundle's golden samples run on ``runtime``, compared with the
    source model's outputs; None for a bundle without them."""
    manifest = Manifest.from_json(json.loads((bundle_dir / MANIFEST_FILE).read_bytes()))
    try:
        golden = read_golden(bundle_dir, manifest)
    except ManifestError as exc:
        log.warning("bundle %s: no parity check: %s", bundle_dir.name[:12], exc)
        return None
    if golden is None:
        return None
    got = runtime.predict(golden.inputs)  # ``infer`` gives the first output
    first = manifest.outputs[0].name
    found = compare([golden.outputs[first]], [got])
    return Parity(found.max_abs_error, found.top1_agreement, found.samples)
