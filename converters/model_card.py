"""The model card written beside every bundle (``MODEL_CARD.md``).

Generated from what the conversion knows: the model's interface, the data
parity was measured on, the per-target results, and the known limits.
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


def render_model_card(manifest: Manifest, description: str, sample_source: str, params: int) -> str:
    is_digits = (
        manifest.labels is not None
        and len(manifest.labels) == 10
        and any(s.shape[1:] == (8, 8, 1) for s in manifest.inputs)
    )
    lines = [
        f"# Model card: {manifest.name} v{manifest.version}",
        "",
        description or f"A Keras model with {params:,} parameters, converted by fedge.",
        "",
        "## Intended use",
        "",
        _INTENDED_USE[is_digits],
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
            "Trained on scikit-learn's 8x8 digits (1,797 images of 10 digits written by 43 "
            "people, 0..16 grey levels scaled to [0, 1]); parity measured on the held-out "
            "test split."
            if is_digits
            else f"Parity measured on: {sample_source}."
        ),
        "",
        "## Metrics per target",
        "",
        _keras_accuracy(manifest),
        "| target | precision | parity | max abs error vs Keras | top-1 agreement | "
        "test accuracy | samples |",
        "|---|---|---|---|---|---|---|",
        *[_parity_row(target, record) for target, record in manifest.parity.items()],
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


def _parity_row(target: str, record: Mapping[str, Any]) -> str:
    err = record.get("max_abs_err")
    top1 = record.get("top1_agreement")
    accuracy = record.get("accuracy")
    return (
        f"| {target} | {record.get('precision', '')} | {record['status']} | "
        f"{'-' if err is None else f'{err:.2e}'} | {'-' if top1 is None else f'{top1:.2%}'} | "
        f"{'-' if accuracy is None else f'{accuracy:.2%}'} | {record.get('samples', 0)} |"
    )
