"""The model card says per target what was verified, and why not where not."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from fedge.converters.bundle import convert
from fedge.converters.model_card import render_model_card
from fedge.converters.options import ConvertOptions
from tests.converters.zoo_users import logits_classifier, save

SAMPLES = {"kind": "seeded random", "source": "seed 0", "range": {"features": [0.0, 1.0]}}


def test_the_card_says_per_target_what_was_verified_and_why_not(tmp_path: Path) -> None:
    options = ConvertOptions(targets=("tflite",), tflite_training=False)
    result = convert(save(logits_classifier(), tmp_path), tmp_path / "b", options)
    reason = "the NumPy MIL evaluator has no kernel for op 'gelu'"
    unverified = {
        "status": "unverified",
        "precision": "fp16",
        "samples": 0,
        "max_abs_err": None,
        "top1_agreement": None,
        "reason": reason,
    }
    manifest = replace(result.manifest, parity={**result.manifest.parity, "coreml": unverified})

    card = render_model_card(manifest, "", SAMPLES, 51, reference_task=False)

    tflite = result.manifest.parity["tflite"]
    assert "each was checked numerically" not in card  # not true of coreml
    assert f"- tflite: checked numerically against Keras: {tflite['reason']}." in card
    assert f"- coreml: not verified: {reason}." in card
    assert "accuracy" not in card.lower()  # another model's card speaks of no test set
