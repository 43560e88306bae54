"""Benchmark ``fedge convert``: per target and quantization, the size,
conversion time and parity; then single-sample latency (p50) of Keras
``model(x)``, Keras ``predict``, the TFLite interpreter and TF.js in Node,
all measured side by side in this one run.

    .venv/bin/python -m bench.convert_bench [--model model.keras] [--iters 2000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.table import Table

from fedge.converters.bundle import BundleResult, convert
from fedge.converters.options import ConvertOptions
from fedge.reference.data import load_task
from fedge.reference.train import TrainConfig, train_reference_model

CONFIGS: list[tuple[str, dict[str, Any]]] = [
    ("tflite", {"tflite_quantize": "none"}),
    ("tflite", {"tflite_quantize": "fp16"}),
    ("tflite", {"tflite_quantize": "dynamic"}),
    ("tflite", {"tflite_quantize": "int8"}),
    ("tfjs", {"tfjs_quantize": "none"}),
    ("tfjs", {"tfjs_quantize": "float16"}),
    ("tfjs", {"tfjs_quantize": "uint8"}),
    ("coreml", {"coreml_precision": "fp32"}),
    ("coreml", {"coreml_precision": "fp16"}),
]


def median_us(fn: Callable[[], object], iters: int, warmup: int = 20) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        started = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - started)
    return float(np.median(times)) / 1000.0


def tflite_invoke(path: Path, x: npt.NDArray[np.float32]) -> Callable[[], object]:
    """The interpreter as a device uses it: set input, invoke, read output."""
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]["index"]
    out = interpreter.get_output_details()[0]["index"]

    def run() -> object:
        interpreter.set_tensor(inp, x)
        interpreter.invoke()
        return interpreter.get_tensor(out)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a .keras model (default: train one)")
    parser.add_argument("--iters", type=int, default=2000)
    args = parser.parse_args()
    console = Console()
    work = Path(tempfile.mkdtemp(prefix="fedge-bench-"))
    model_path = args.model or work / "digits.keras"
    if args.model is None:
        console.print("training the reference model ...")
        train_reference_model(model_path, TrainConfig(), progress=False)

    results: list[tuple[str, str, BundleResult]] = []
    for index, (target, extra) in enumerate(CONFIGS):
        options = ConvertOptions(targets=(target,), tflite_training=False, **extra)
        mode = options.precision(target)
        console.print(f"converting {target} {mode} ...")
        results.append((target, mode, convert(model_path, work / f"b{index}", options)))

    sizes = Table(title="fedge convert: reference CNN (digits, 8x8x1, 38k params)")
    for column in (
        "target",
        "precision",
        "size",
        "vs fp32",
        "convert s",
        "parity",
        "max abs err",
        "top-1",
        "accuracy",
    ):
        sizes.add_column(
            column, justify="left" if column in ("target", "precision", "parity") else "right"
        )
    fp32_size: dict[str, int] = {}
    for target, mode, result in results:
        outcome = result.outcomes[0]
        size = outcome.artifact.total_bytes if outcome.artifact else 0
        fp32_size.setdefault(target, size)
        record = result.manifest.parity.get(target, {})
        err, top1, acc = (record.get(k) for k in ("max_abs_err", "top1_agreement", "accuracy"))
        sizes.add_row(
            target,
            mode,
            f"{size / 1024:.1f} KiB",
            f"{size / fp32_size[target]:.0%}",
            f"{outcome.seconds:.2f}",
            record.get("status", "-"),
            "-" if err is None else f"{err:.2e}",
            "-" if top1 is None else f"{top1:.2%}",
            "-" if acc is None else f"{acc:.2%}",
        )
    console.print(sizes)

    import tensorflow as tf

    from fedge.converters.targets.tfjs import node_latency_us

    x = load_task().test.x[:1]
    model = tf.keras.models.load_model(model_path)
    keras_call = median_us(lambda: model(x, training=False), max(args.iters // 10, 50))
    keras_predict = median_us(lambda: model.predict(x, verbose=0), 50, warmup=5)
    latency = Table(title="single-sample latency (batch 1, one thread where it applies)")
    for column in ("runtime", "p50 µs", "speed-up vs Keras model(x)"):
        latency.add_column(column, justify="left" if column == "runtime" else "right")
    latency.add_row("Keras model(x)", f"{keras_call:.1f}", "1.0x")
    latency.add_row("Keras predict", f"{keras_predict:.1f}", f"{keras_call / keras_predict:.2f}x")
    for target, mode, result in results:
        if target not in result.manifest.artifacts:
            continue
        record = result.manifest.artifacts[target]
        if target == "tflite":
            p50 = median_us(tflite_invoke(result.path / record["entry"], x), args.iters)
        elif target == "tfjs":
            p50 = node_latency_us(result.path, record, [x], warmup=50, iters=500)["p50_us"]
        else:
            continue
        latency.add_row(f"{target} {mode}", f"{p50:.1f}", f"{keras_call / p50:.0f}x")
    console.print(latency)
    console.print(f"bundles left in {work}")


if __name__ == "__main__":
    main()
