"""A simulated device's parity check on the runtime it uses (issue 23).

The device runs the candidate bundle's golden inputs
(:mod:`fedge.bundle.golden`) on its TFLite interpreter, the same
``train.tflite`` ``infer`` it serves with, and compares them with the source
model's outputs the converter stored: what it reports with its canary
evaluation. A bundle without golden samples (made before they existed)
reports no parity.
"""

from __future__ import annotations

import json
from pathlib import Path

from fedge.bundle.golden import compare, read_golden
from fedge.bundle.manifest import MANIFEST_FILE, Manifest
from fedge.client_sim.device.trainers import Trainer
from fedge.wire.canary import Parity

RUNTIME = "tflite"  # what the simulator's devices run models on


def golden_parity(bundle_dir: Path, runtime: Trainer) -> Parity | None:
    """The bundle's golden samples run on ``runtime``, compared with the
    source model's outputs; None for a bundle without them."""
    manifest = Manifest.from_json(json.loads((bundle_dir / MANIFEST_FILE).read_bytes()))
    golden = read_golden(bundle_dir, manifest)
    if golden is None:
        return None
    got = runtime.predict(golden.inputs)  # ``infer`` gives the first output
    first = manifest.outputs[0].name
    found = compare([golden.outputs[first]], [got])
    return Parity(found.max_abs_error, found.top1_agreement, found.samples)
