"""``fedge convert`` on the kinds of models users bring: one row per model
kind and target with the parity status, the max abs error against the
source model on inputs fedge did not choose (drawn here with another seed
and given as ``--samples``), and the export time; then int8 on a model that
expects 0..255 pixels, calibrated on real images.

    .venv/bin/python -m bench.converter_zoo_bench [--only NAME ...]

The models are the converter tests' zoos (``tests/converters/zoo_*.py``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from fedge.converters.bundle import BundleResult, convert
from fedge.converters.options import ConvertOptions
from fedge.converters.source.model_io import input_specs
from tests import model_zoo
from tests.converters import zoo_coreml, zoo_rnn_custom, zoo_users

SAMPLE_SEED = 12345  # not fedge's default seed (0)
ROWS = 64


@dataclass(frozen=True)
class Kind:
    name: str
    build: Callable[[], Any]
    suffix: str = ".keras"
    options: dict[str, Any] = field(default_factory=dict)


KINDS = [
    Kind("reference CNN", model_zoo.reference_cnn),
    Kind("0..255 pixel CNN (Rescaling)", zoo_users.pixel_classifier),
    Kind("logits classifier (from_logits loss)", zoo_users.logits_classifier),
    Kind("token classifier (Embedding)", zoo_users.token_classifier),
    Kind("two outputs", zoo_users.two_output_model),
    Kind("dict outputs", zoo_rnn_custom.dict_output_model),
    Kind("LSTM", zoo_rnn_custom.lstm_classifier),
    Kind("LSTM, any length", zoo_rnn_custom.variable_length_lstm),
    Kind("Bidirectional GRU", zoo_rnn_custom.bidirectional_gru),
    Kind("GRU(reset_after=True)", zoo_rnn_custom.gru_reset_after),
    Kind("Normalization", zoo_rnn_custom.normalization_model),
    Kind(
        "custom layers (.h5)",
        zoo_rnn_custom.custom_layer_model,
        ".h5",
        {"custom_objects": ("tests.converters.custom_layers:Offset",)},
    ),
    Kind("Lambda (.h5)", zoo_rnn_custom.lambda_model, ".h5", {"unsafe_deserialization": True}),
    Kind("regressor", zoo_coreml.regressor),
    Kind("swish MLP", zoo_coreml.swish_mlp),
    Kind("MobileNetV2 block", zoo_coreml.mobilenet_block),
    Kind("MobileNetV2 (alpha 0.35, 32x32)", zoo_coreml.mobilenet_v2),
]


def independent_samples(model: Any, path: Path) -> Path:
    """Inputs drawn with another seed than fedge's: normal floats, small ints."""
    rng = np.random.default_rng(SAMPLE_SEED)
    arrays = {}
    for name, shape, dtype in input_specs(model):
        dims = [ROWS, *(d if d is not None else 5 for d in shape[1:])]
        if "int" in dtype:
            arrays[name] = rng.integers(0, 5, size=dims).astype(dtype)
        else:
            arrays[name] = rng.normal(0.0, 1.0, size=dims).astype(np.float32)
    np.savez(path, **arrays)
    return path


def convert_kind(kind: Kind, work: Path) -> tuple[BundleResult | None, float, str]:
    model = kind.build()
    source = zoo_rnn_custom.save(model, work / f"model{kind.suffix}")
    samples = independent_samples(model, work / "samples.npz")
    options = ConvertOptions(samples_path=samples, **kind.options)
    started = time.perf_counter()
    try:
        result = convert(source, work / "bundle", options, force=True)
    except Exception as exc:  # a row says what went wrong; the bench goes on
        return None, time.perf_counter() - started, f"{type(exc).__name__}: {exc}"
    return result, time.perf_counter() - started, ""


def saved_model_kind(work: Path) -> tuple[BundleResult | None, float, str]:
    source = zoo_rnn_custom.save_plain_saved_model(work)
    started = time.perf_counter()
    try:
        result = convert(source, work / "bundle", ConvertOptions(), force=True)
    except Exception as exc:
        return None, time.perf_counter() - started, f"{type(exc).__name__}: {exc}"
    return result, time.perf_counter() - started, ""


def rows_of(name: str, outcome: tuple[BundleResult | None, float, str]) -> list[list[str]]:
    result, seconds, error = outcome
    if result is None:
        return [[name, "all", "error", "", f"{seconds:.1f}", error[:90]]]
    rows = []
    manifest = result.manifest
    for target in ("tflite", "tflite_train", "tfjs", "coreml"):
        parity = manifest.parity.get(target)
        if parity is None and target not in manifest.failures:
            continue
        parity = parity or {}
        artifact = manifest.artifacts.get(target.removesuffix("_train"), {})
        err = parity.get("max_abs_err")
        note = manifest.failures.get(target) or parity.get("reason") or ""
        if target == "tfjs" and artifact.get("format") == "graph-model":
            note = "graph model, inference only. " + note
        rows.append(
            [
                name,
                target,
                str(parity.get("status", "failed")),
                "" if err is None else f"{err:.1e}",
                f"{artifact.get('seconds', 0.0):.1f}" if target != "tflite_train" else "",
                str(note)[:90],
            ]
        )
    rows[0][4] += f" (total {seconds:.1f})"
    return rows


def int8_rows(work: Path) -> list[list[str]]:
    """int8 of the 0..255 pixel CNN: calibrated on real pixels, judged on
    images it never saw."""
    x, _ = zoo_users.pixel_images()
    model = zoo_users.pixel_classifier()
    source = zoo_rnn_custom.save(model, work / "pixels.keras")
    np.save(work / "calibration.npy", x[:300])
    np.save(work / "held_out.npy", x[1200:1500])
    rows = []
    for quantize in ("none", "int8"):
        options = ConvertOptions(
            targets=("tflite",),
            tflite_quantize=quantize,
            tflite_training=False,
            calibration_path=work / "calibration.npy" if quantize == "int8" else None,
            samples_path=work / "held_out.npy",
        )
        manifest = convert(source, work / f"int8-{quantize}", options, force=True).manifest
        parity = manifest.parity["tflite"]
        artifact = manifest.artifacts["tflite"]
        agreement = parity.get("top1_agreement")
        rows.append(
            [
                quantize,
                f"{artifact['bytes']:,}",
                str(parity["status"]),
                f"{parity['max_abs_err']:.3g}",
                "" if agreement is None else f"{agreement:.1%}",
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", help="model kinds whose name contains one of these")
    args = parser.parse_args()
    console = Console(width=200)
    table = Table(
        title=f"fedge convert by model kind (parity on {ROWS} inputs, seed {SAMPLE_SEED})"
    )
    for column in ("model", "target", "status", "max abs err", "seconds", "note"):
        table.add_column(column)
    kinds = [k for k in KINDS if not args.only or any(o in k.name for o in args.only)]
    with tempfile.TemporaryDirectory() as tmp:
        for i, kind in enumerate(kinds):
            work = Path(tmp) / f"k{i}"
            work.mkdir()
            console.print(f"[dim]converting {kind.name} ...[/dim]")
            for row in rows_of(kind.name, convert_kind(kind, work)):
                table.add_row(*row)
        if not args.only or any("SavedModel" in o for o in args.only):
            work = Path(tmp) / "savedmodel"
            work.mkdir()
            for row in rows_of("plain SavedModel (tf.Module)", saved_model_kind(work)):
                table.add_row(*row)
        console.print(table)
        int8 = Table(
            title="int8, 0..255 pixel CNN: calibrated on 300 real images, judged on 300 others"
        )
        for column in ("quantize", "bytes", "status", "max abs err", "top-1 agreement"):
            int8.add_column(column)
        work = Path(tmp) / "int8"
        work.mkdir()
        for row in int8_rows(work):
            int8.add_row(*row)
        console.print(int8)


if __name__ == "__main__":
    main()
