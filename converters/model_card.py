"""The model card written beside every bundle (``MODEL_CARD.md``).

Generated from what the conversion knows: the model's interface, the data
parity was measured on, the per-target results, and the known limits. Only
the reference model's card speaks of the digits task and its test accuracy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fedge.bundle.manifest import Manifest
from fedge.converters.targets.training_loss import describe as describe_loss

_INTENDED_USE = {
    True: "Classifying 8x8 greyscale handwritten digits on the device that captured them "
    "(fedge's reference task), in an app, a browser or on an Apple device, and improving "
    "the model by federated rounds without the images leaving the devices.",
    False: "On-device inference with the converted runtimes below; what was checked "
    "against the source Keras model is said per target under Metrics per target.",
}
# What each parity status means for the card's reader, before the record's reason.
_VERIFIED = {
    "pass": "checked numerically against Keras",
    "fail": "FAILED its check against Keras",
    "unverified": "not verified",
}


def render_model_card(
    manifest: Manifest,
    description: str,
    samples: Mapping[str, Any],
    params: int,
    reference_task: bool,
) -> str:
    """``samples``: what parity ran on (:meth:`SampleSet.describe`)."""
    lines = [
        f"# Model card: {manifest.name} v{manifest.version}",
        "",
        description or f"A Keras model with {params:,} parameters, converted by fedge.",
        "",
        "## Intended use",
        "",
        _INTENDED_USE[reference_task],
        "",
        "## Interface",
        "",
        "| | name | shape | dtype |",
        "|---|---|---|---|",
        *[f"| input | {s.name} | {_shape(s.shape)} | {s.dtype} |" for s in manifest.inputs],
        *[f"| output | {s.name} | {_shape(s.shape)} | {s.dtype} |" for s in manifest.outputs],
        "",
        f"Labels: {', '.join(manifest.labels)}" if manifest.labels else "Labels: none given.",
        "",
        "## Data",
        "",
        (
            "The reference task: scikit-learn's 8x8 digits (1,797 images of 10 digits written "
            "by 43 people, 0..16 grey levels scaled to [0, 1]). "
            if reference_task
            else ""
        )
        + f"Parity inputs: {describe_inputs(samples)}.",
        *_random_caveat(samples),
        *_calibration(manifest),
        "",
        "## Metrics per target",
        "",
        _keras_accuracy(manifest),
        *_parity_table(manifest.parity),
        "",
        *_verified(manifest.parity),
        "",
        "## Limits",
        "",
        "- Parity says the runtimes agree with the Keras model; it says nothing about how "
        "good the Keras model is on data unlike its training data.",
        "- Core ML is checked on Linux by evaluating the saved MIL program in NumPy, not by "
        "Core ML itself; ops the evaluator lacks make the status `unverified`.",
        "- Reduced precision is not checked for exact values: fp16 by its error relative to "
        "the range of Keras's outputs (at most 1 %), dynamic, int8 and uint8 by top-1 "
        "agreement.",
        "- `unverified` is not a pass: the runtime could not be run here, or the outputs did "
        "not vary over the samples, so any constant would have agreed.",
        *_artifact_notes(manifest),
        "",
        "## Training artifact",
        "",
        _training(manifest),
    ]
    if manifest.failures:
        lines += ["", "## Targets that failed", ""]
        # A failure's message names its target already ("coreml: parity FAILED: ...").
        lines += [
            f"- {message}" if message.startswith(f"{target}:") else f"- {target}: {message}"
            for target, message in manifest.failures.items()
        ]
    return "\n".join(lines) + "\n"


def describe_inputs(samples: Mapping[str, Any]) -> str:
    """``user samples (mine.npy); pixels in [0, 255]``: for the card and the summary."""
    ranges = ", ".join(
        f"{name} in [{low:.3g}, {high:.3g}]" for name, (low, high) in samples["range"].items()
    )
    return f"{samples['kind']} ({samples['source']}); {ranges}"


def _random_caveat(samples: Mapping[str, Any]) -> list[str]:
    if samples["kind"] != "seeded random":
        return []
    return [
        "",
        "No inputs were given (`--samples`), so parity ran on random numbers: it shows that "
        "the runtimes compute what Keras computes, not how they behave on real inputs.",
    ]


def _calibration(manifest: Manifest) -> list[str]:
    calibration = manifest.artifacts.get("tflite", {}).get("calibration")
    if not calibration:
        return []
    return ["", f"int8 calibrated on: {describe_inputs(calibration)}."]


def _training(manifest: Manifest) -> str:
    tflite = manifest.artifacts.get("tflite")
    if tflite is None:
        return "None: no TFLite model in this bundle."
    training = tflite.get("training")
    if training is None:
        reason = tflite.get("training_skipped") or "not requested (--no-training)"
        return f"No training artifact: {reason}."
    text = f"`{training['path']}` takes one SGD step per call: {describe_loss(training)}."
    if training.get("verified") is False:
        text += (
            " It FAILED its check against Keras and is kept only because of --keep-failed: "
            f"{training['failure']}"
        )
    return text


def _artifact_notes(manifest: Manifest) -> list[str]:
    """Each target's own limits (its artifact record's ``notes``)."""
    return [
        f"- {target}: {note}"
        for target, record in manifest.artifacts.items()
        for note in record.get("notes") or []
    ]


def _keras_accuracy(manifest: Manifest) -> str:
    accuracy = manifest.artifacts.get("keras", {}).get("test_accuracy")
    if accuracy is None:
        return ""
    return f"Keras model test accuracy: {accuracy:.2%}.\n"


def _shape(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("n" if d is None else str(d) for d in shape) + ")"


def _verified(parity: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Per target what was verified, with the parity record's reason: an
    unverified target is not a checked one, and the reader learns why."""
    lines = []
    for target, record in parity.items():
        status = str(record["status"])
        said = _VERIFIED.get(status, status)
        reason = str(record.get("reason") or "").rstrip(".")
        lines.append(f"- {target}: {said}: {reason}." if reason else f"- {target}: {said}.")
    return lines


def _parity_table(parity: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One row per target; a test accuracy column only where the samples had
    labels (the reference task's test split)."""
    accuracy = any(record.get("accuracy") is not None for record in parity.values())
    columns = ["target", "precision", "parity", "max abs error vs Keras", "top-1 agreement"]
    columns += ["test accuracy", "samples"] if accuracy else ["samples"]
    return [
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *[_parity_row(target, record, accuracy) for target, record in parity.items()],
    ]


def _parity_row(target: str, record: Mapping[str, Any], with_accuracy: bool) -> str:
    err = record.get("max_abs_err")
    top1 = record.get("top1_agreement")
    accuracy = record.get("accuracy")
    cells = [
        target,
        str(record.get("precision", "")),
        str(record["status"]),
        "-" if err is None else f"{err:.2e}",
        "-" if top1 is None else f"{top1:.2%}",
    ]
    if with_accuracy:
        cells.append("-" if accuracy is None else f"{accuracy:.2%}")
    cells.append(str(record.get("samples", 0)))
    return "| " + " | ".join(cells) + " |"
