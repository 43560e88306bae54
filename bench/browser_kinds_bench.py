"""The browser demo for each model kind, next to the digits CNN: model load,
batch-1 predict p50, one local training epoch, in headless Chromium.

    .venv/bin/python -m bench.browser_kinds_bench [--runs 100] [--examples 64]

Each kind (the models of ``tests/web/any_models.py``: a tabular classifier,
a tabular regressor with a Normalization layer, a 32x32x3 image model, a
two-input model; and the reference digits CNN) is converted (``tflite,tfjs``)
and served by a real ``fedge serve``; the page (``/``) builds itself from
its manifest. Timings are taken in the page with ``performance.now()``:

* load: the page's first load of the release (release lookup, download,
  sha256 checks, building the model, one warm-up run), fresh profile;
* predict: batch 1 on zeros, ``--runs`` after 20 warm-up runs, on wasm
  (the page's default backend);
* epoch: local SGD (batch 16) on ``--examples`` stored examples, on cpu, the
  median of 3 epochs after the first; ``predict only`` for a graph model.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from bench.browser_bench import bundle_for
from tests.helpers.browser import chromium
from tests.helpers.live_server import running
from tests.web.any_models import build

KINDS = ("digits", "tabular_classifier", "tabular_regressor", "image_rgb", "two_inputs")
READY = "() => window.fedgeDemo && window.fedgeDemo.ready && window.fedgeFederated?.ready"
PREDICT = """async ([n, warm]) => {
  const d = window.fedgeDemo.described();
  const input = Object.fromEntries(d.inputs.map((i) => [i.name, new Array(i.size).fill(0)]));
  const ms = [];
  for (let i = 0; i < n + warm; i++) {
    const t = performance.now();
    await window.fedgeDemo.predict(input);
    if (i >= warm) ms.push(performance.now() - t);
  }
  return ms;
}"""
EXAMPLES = """async (n) => {
  const d = window.fedgeDemo.described();
  for (let k = 0; k < n; k++) {
    const row = (i) => Array.from({length: i.size}, (_, j) => ((j * 7 + k) % 11) / 10);
    const inputs = Object.fromEntries(d.inputs.map((i) => [i.name, row(i)]));
    await window.fedgeFederated.addExample(inputs, k % 2);
  }
}"""


def measure(url: str, runs: int, examples: int) -> dict[str, Any]:
    with chromium() as browser:
        context = browser.new_context()
        page = context.new_page()
        page.goto(url + "/")
        page.wait_for_function(READY, timeout=120_000)
        found: dict[str, Any] = {"load": page.evaluate("() => window.fedgeDemo.loadMs")}
        found["predict"] = page.evaluate(PREDICT, [runs, 20])
        if page.evaluate("() => window.fedgeFederated.trainable"):
            page.evaluate(EXAMPLES, examples)
            timing = page.evaluate(
                "() => window.fedgeFederated.benchmarkTraining({backend: 'cpu', epochs: 4})"
            )
            found["epoch"] = statistics.median(timing["epochMs"][1:])
        else:
            found["epoch"] = None
        context.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--examples", type=int, default=64)
    options = parser.parse_args()
    table = Table(
        title=f"The demo page per model kind (predict: wasm, batch 1; "
        f"epoch: cpu, {options.examples} examples, batch 16)"
    )
    for column in ("model", "load ms (cold)", "predict p50 ms", "one epoch ms"):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory(prefix="fedge-kinds-bench-") as tmp:
        work = Path(tmp)
        for kind in KINDS:
            bundle = (
                bundle_for(None, work / kind)
                if kind == "digits"
                else build(kind, work / kind).bundle
            )
            with running(
                work / f"{kind}-data", ["--model", str(bundle)], work / f"{kind}.log"
            ) as server:
                found = measure(server.url, options.runs, options.examples)
            epoch = "predict only" if found["epoch"] is None else f"{found['epoch']:.0f}"
            p50 = float(np.percentile(found["predict"], 50))
            table.add_row(kind, f"{found['load']:.0f}", f"{p50:.3f}", epoch)
    Console().print(table)


if __name__ == "__main__":
    main()
