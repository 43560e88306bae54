"""Model as a service: ``POST /v1/models/{name}/predict`` over HTTP against
the same TFLite model run in process.

    .venv/bin/python -m bench.predict_bench [--requests 300] [--batches 1,32]

Builds the reference digits CNN, converts it to a TFLite bundle, starts the
real ``fedge serve`` process on loopback from it, and times predict requests
one after another on one ``requests.Session`` (keep-alive), after a warm-up
that loads TensorFlow in the server. The in-process column times the
bundle's predictor (:func:`fedge.converters.targets.tflite.load_predictor`, the one
the server uses) on the same batches, so the difference is what the service
costs: JSON both ways, HTTP on loopback, the input checks.
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
import requests
from rich.console import Console
from rich.table import Table

from fedge.bundle.manifest import open_bundle
from fedge.server.predict.codec import PredictResult, predict_body
from tests.helpers.live_server import running

Array = npt.NDArray[Any]
WARMUP = 5


def build_bundle(work: Path) -> Path:
    """The reference CNN (seeded, untrained) as a TFLite-only bundle."""
    import tensorflow as tf

    from fedge.converters.bundle import convert
    from fedge.converters.options import ConvertOptions
    from fedge.reference.model import build_reference_model

    tf.keras.utils.set_random_seed(0)
    build_reference_model().save(work / "digits.keras")
    options = ConvertOptions(targets=("tflite",), verify=False, tflite_training=False)
    convert(work / "digits.keras", work / "bundle", options)
    return work / "bundle"


def timed(call: Callable[[], object], repeats: int) -> list[float]:
    for _ in range(WARMUP):
        call()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--batches", default="1,32", help="comma-separated batch sizes")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    console = Console()
    rows = []
    with tempfile.TemporaryDirectory(prefix="fedge-predict-") as tmp:
        work = Path(tmp)
        console.print("converting the reference CNN ...")
        bundle = build_bundle(work)
        manifest = open_bundle(bundle).manifest
        (spec,) = manifest.inputs
        from fedge.converters.targets.tflite import load_predictor

        local = load_predictor(bundle, manifest.artifact("tflite"))
        # One device sends every request, faster than its default limit (100/s).
        flags = ["--model", str(bundle), "--deadline", "3600", "--rate-limit", "predict=off"]
        with running(work / "data", flags, work / "server.log") as server:
            session = requests.Session()
            token = session.post(f"{server.url}/v1/devices", json={}, timeout=30).json()["token"]
            session.headers["Authorization"] = f"Bearer {token}"
            url = f"{server.url}/v1/models/{manifest.name}/predict"
            first = predict_body({spec.name: np.zeros((1, *(d or 1 for d in spec.shape[1:])))})
            started = time.perf_counter()
            session.post(url, json=first, timeout=120).raise_for_status()
            first_s = time.perf_counter() - started
            rng = np.random.default_rng(0)
            for batch in batches:
                shape = (batch, *(d or 1 for d in spec.shape[1:]))
                images = rng.random(shape, dtype=np.float32)
                body = predict_body({spec.name: images})

                def over_http(body: dict[str, Any] = body) -> PredictResult:
                    reply = session.post(url, json=body, timeout=120)
                    reply.raise_for_status()
                    return PredictResult.from_json(reply.json())

                console.print(f"batch {batch}: {args.requests} requests ...")
                served = over_http().outputs
                expected = local.predict([images])
                gap = max(
                    float(np.max(np.abs(served[o.name] - e)))
                    for o, e in zip(manifest.outputs, expected, strict=True)
                )
                http_s = timed(over_http, args.requests)

                def in_process(images: Array = images) -> list[Array]:
                    return local.predict([images])

                local_s = timed(in_process, args.requests)
                rows.append((batch, http_s, local_s, gap))
    table = Table(
        title=f"predict ms: {manifest.name} TFLite, {args.requests} sequential requests, "
        "HTTP on loopback vs in process"
    )
    for column in (
        "batch",
        "HTTP p50",
        "HTTP p99",
        "local p50",
        "local p99",
        "HTTP rows/s",
        "local rows/s",
        "max |diff|",
    ):
        table.add_column(column, justify="right")
    for batch, http_s, local_s, gap in rows:
        table.add_row(
            str(batch),
            f"{np.percentile(http_s, 50) * 1000:.2f}",
            f"{np.percentile(http_s, 99) * 1000:.2f}",
            f"{np.percentile(local_s, 50) * 1000:.3f}",
            f"{np.percentile(local_s, 99) * 1000:.3f}",
            f"{batch / np.median(http_s):.0f}",
            f"{batch / np.median(local_s):.0f}",
            f"{gap:.1e}",
        )
    console.print(table)
    console.print(f"first request (the server imports TensorFlow): {first_s:.2f} s")


if __name__ == "__main__":
    main()
