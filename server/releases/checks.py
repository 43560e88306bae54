"""What a pushed bundle must be, beyond matching its hashes: the model the
server federates, with every artifact's parity passed.

Pure functions of the manifest; the views turn a refusal into its HTTP error.
"""

from __future__ import annotations

from fedge.bundle.manifest import Manifest
from fedge.converters.options import TRAIN_TARGET
from fedge.wire.weight_spec import ModelSpec


def model_differences(manifest: Manifest, name: str, specs: ModelSpec) -> list[str]:
    """How the bundle's model differs from the server's (empty: the same
    model). The weight spec decides whether updates and checkpoints fit
    it; the name keeps two different models of one shape apart."""
    found = []
    if manifest.name != name:
        found.append(f"name {name!r} on the server, {manifest.name!r} in the bundle")
    found += specs.differences(manifest.weights, "on the server", "in the bundle")
    return found


def parity_failures(manifest: Manifest) -> list[str]:
    """Every artifact whose check against Keras failed, with the reason: a
    parity record with status ``fail``, an artifact kept although it failed
    (``verified: false``), or a training artifact that failed (its check or
    its conversion), which devices would train with."""
    found: dict[str, str] = {}
    for target, record in manifest.parity.items():
        if isinstance(record, dict) and record.get("status") == "fail":
            found[target] = str(record.get("reason") or "parity failed")
    for target, record in manifest.artifacts.items():
        if isinstance(record, dict) and record.get("verified") is False:
            found.setdefault(target, str(record.get("failure") or "not verified"))
    if TRAIN_TARGET in manifest.failures:
        found.setdefault(TRAIN_TARGET, manifest.failures[TRAIN_TARGET])
    return [f"{target}: {reason}" for target, reason in found.items()]
