"""The model card written beside every bundle (``MODEL_CARD.md``).

Generated from what the conversion knows: the model's interface, the data
parity was measured on, the per-target results, and the known limits. Only
the reference model's card speaks of the digits task and its test accuracy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fedge.manifest import Manifest

_INTENDED_USE = {
    True: "Classifying 8x8 greyscale handwritten digits on the device that captured them "
    "(fedge's reference task), in an app, a browser or on an Apple device, and improving "
    "the model by federated rounds without the images leaving the devices.",
    False: "On-device inference with the converted runtimes below; each was checked "
    "numerically against the source Keras model.",
}


def render_model_card(
    manifest: Manifest, description: str, sample_source: str, params: int, reference_task: bool
) -> str:
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
        + f"Parity measured on: {sample_source}.",
        "",
        "## Metrics per target",
        "",
        _keras_accuracy(manifest),
        *_parity_table(manifest.parity),
        "",
        "## Limits",
        "",
        "- Parity says the runtimes agree with the Keras model; it says nothing about how "
        "good the Keras model is on data unlike its training data.",
        "- Core ML is checked on Linux by evaluating the saved MIL program in NumPy, not by "
        "Core ML itself; ops the evaluator lacks make the status `unverified`.",
        "- Reduced precision (fp16, dynamic, int8, uint8) is checked by top-1 agreement, "
        "not by exact values.",
    ]
    if manifest.failures:
        lines += ["", "## Targets that failed", ""]
        lines += [f"- {target}: {message}" for target, message in manifest.failures.items()]
    return "\n".join(lines) + "\n"


def _keras_accuracy(manifest: Manifest) -> str:
    accuracy = manifest.artifacts.get("keras", {}).get("test_accuracy")
    if accuracy is None:
        return ""
    return f"Keras model test accuracy: {accuracy:.2%}.\n"


def _shape(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("n" if d is None else str(d) for d in shape) + ")"


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
