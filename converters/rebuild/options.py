"""The conversion options of a rebuilt bundle: those its source bundle was made with.

A release cut from a checkpoint is the live release with other weights, so
it is converted the way the live bundle was, as its manifest records it:

==================  ===================================================
targets             every conversion target the bundle has (keras and
                    weights are always written)
tflite              ``quantization``; a training artifact (and its loss)
                    if the bundle has one
tfjs                ``quantization``, ``shard_bytes``
coreml              ``precision``, ``minimum_deployment_target``
parity              each target held to the tolerance it passed
name, labels        the bundle's
==================  ===================================================

``strict``: a target that fails fails the build, so the new release never
has fewer targets than the live one. A pure function of the manifest (no
TensorFlow), tested on its own.
"""

from __future__ import annotations

from typing import Any

from fedge.bundle.manifest import Manifest
from fedge.converters.options import (
    TARGETS,
    TOLERANCE_TARGETS,
    ConvertOptions,
    Tolerance,
)

_BOUNDS = ("max_abs_err", "min_top1_agreement", "max_rel_err")


def options_like(manifest: Manifest, version: str) -> ConvertOptions:
    artifacts = manifest.artifacts
    targets = tuple(t for t in TARGETS if t in artifacts)
    tflite, tfjs, coreml = (_record(artifacts, t) for t in ("tflite", "tfjs", "coreml"))
    defaults = ConvertOptions()
    training = tflite.get("training")
    trains = isinstance(training, dict)
    training = training if isinstance(training, dict) else {}
    return ConvertOptions(
        targets=targets,
        tflite_quantize=str(tflite.get("quantization", defaults.tflite_quantize)),
        tflite_training=trains,
        # Read from the live bundle's record: the model the worker saves is
        # not compiled (fedge loads models without compiling them).
        loss=str(training["loss"]) if training.get("loss") else None,
        from_logits=bool(training.get("from_logits")),
        tfjs_quantize=str(tfjs.get("quantization", defaults.tfjs_quantize)),
        tfjs_shard_bytes=int(tfjs.get("shard_bytes", defaults.tfjs_shard_bytes)),
        coreml_precision=str(coreml.get("precision", defaults.coreml_precision)),
        coreml_minimum_target=str(
            coreml.get("minimum_deployment_target", defaults.coreml_minimum_target)
        ),
        strict=True,
        verify=True,
        name=manifest.name,
        version=version,
        labels=manifest.labels,
        target_tolerances=_tolerances(manifest.parity),
    )


def _record(artifacts: dict[str, Any], target: str) -> dict[str, Any]:
    record = artifacts.get(target)
    return record if isinstance(record, dict) else {}


def _tolerances(parity: dict[str, Any]) -> dict[str, Tolerance]:
    """The bound each target's parity was checked against, where recorded."""
    found = {}
    for target, record in parity.items():
        tolerance = record.get("tolerance") if isinstance(record, dict) else None
        if target in TOLERANCE_TARGETS and isinstance(tolerance, dict):
            bounds = {b: float(tolerance[b]) for b in _BOUNDS if tolerance.get(b) is not None}
            if bounds:
                found[target] = Tolerance(**bounds)
    return found
