"""The browser demo in headless Chromium: inference per backend, model load
cold and from IndexedDB, local training per epoch per backend.

    .venv/bin/python -m bench.browser_bench [--bundle runs/bundle] [--runs 200] [--loads 5]

A real ``fedge serve --model BUNDLE`` process and the system Chromium
(Debian's ``chromium``) driven by Playwright, as in the browser tests. All
timings are taken in the page with ``performance.now()`` (the page is
cross-origin isolated, so the timer is fine-grained):

* inference: batch 1 on the page's current drawing, ``--runs`` after 20
  warm-up runs, per backend (wasm, cpu, webgl: SwiftShader, software);
* model load: release lookup, download or IndexedDB read, sha256 checks,
  building the model and one warm-up run: the first load of a fresh browser
  profile (cold) and reloads (from the cache), ``--loads`` each;
* training: one round's local training (SGD, batch 16) on ``--examples``
  digits stored as the user's corrections, per epoch, on cpu and webgl
  (wasm has no Conv2DBackpropFilter).

Without ``--bundle`` the reference CNN is trained briefly and converted.
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

from tests.helpers.browser import chromium
from tests.helpers.live_server import running

READY = "() => window.fedgeDemo && window.fedgeDemo.ready && window.fedgeFederated?.ready"
INFER = """async ([n, warm]) => {
  const input = Array.from({length: 64}, (_, i) => ((i * 37) % 17) / 16);
  const ms = [];
  for (let i = 0; i < n + warm; i++) {
    const t = performance.now();
    await window.fedgeDemo.predict(input);
    if (i >= warm) ms.push(performance.now() - t);
  }
  return ms;
}"""


def bundle_for(path: Path | None, work: Path) -> Path:
    if path is not None:
        return path
    from fedge.converters.bundle import convert
    from fedge.converters.options import ConvertOptions
    from fedge.reference.train import TrainConfig, train_reference_model

    model = work / "model.keras"
    train_reference_model(model, TrainConfig(epochs=5), progress=False)
    convert(model, work / "bundle", ConvertOptions(targets=("tflite", "tfjs")))
    return work / "bundle"


def p(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def measure(url: str, runs: int, loads: int, examples: int, epochs: int) -> dict[str, Any]:
    from fedge.reference.data import load_digits_images

    x, y = load_digits_images()
    found: dict[str, Any] = {"infer": {}, "cold": [], "cached": [], "train": {}}
    with chromium() as browser:
        for _ in range(loads):  # a fresh profile each: nothing cached
            context = browser.new_context()
            page = context.new_page()
            page.goto(url)
            page.wait_for_function(READY, timeout=120_000)
            found["cold"].append(page.evaluate("window.fedgeDemo.loadMs"))
            for _ in range(loads):
                page.reload()
                page.wait_for_function(READY, timeout=120_000)
                assert page.evaluate("window.fedgeDemo.loadedFrom") == "cache"
                found["cached"].append(page.evaluate("window.fedgeDemo.loadMs"))
            if len(found["cold"]) < loads:
                context.close()
        for backend in ("wasm", "cpu", "webgl"):
            page.evaluate("(b) => window.fedgeDemo.setBackend(b)", backend)
            assert page.evaluate("tf.getBackend()") == backend
            found["infer"][backend] = page.evaluate(INFER, [runs, 20])
        for pixels, label in zip(x[:examples], y[:examples], strict=True):
            page.evaluate(
                "([p, l]) => window.fedgeFederated.addExample(p, l)",
                [pixels.reshape(-1).tolist(), int(label)],
            )
        for backend in ("cpu", "webgl"):
            timing = page.evaluate(
                "([b, e]) => window.fedgeFederated.benchmarkTraining({backend: b, epochs: e})",
                [backend, epochs],
            )
            found["train"][backend] = timing["epochMs"]
        context.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=4)
    options = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory(prefix="fedge-browser-bench-") as tmp:
        work = Path(tmp)
        bundle = bundle_for(options.bundle, work)
        with running(work / "data", ["--model", str(bundle)], work / "server.log") as server:
            found = measure(
                server.url, options.runs, options.loads, options.examples, options.epochs
            )

    infer = Table(title=f"In-browser inference, batch 1 ({options.runs} runs after 20 warm-up)")
    for column in ("backend", "p50 ms", "p99 ms"):
        infer.add_column(column, justify="right")
    for backend, ms in found["infer"].items():
        infer.add_row(backend, f"{p(ms, 50):.3f}", f"{p(ms, 99):.3f}")
    console.print(infer)

    load = Table(title="Model load (release, files, sha256 checks, build, one warm-up run)")
    for column in ("from", "loads", "median ms", "min ms", "max ms"):
        load.add_column(column, justify="right")
    for name, ms in (("network (cold)", found["cold"]), ("IndexedDB", found["cached"])):
        load.add_row(
            name, str(len(ms)), f"{statistics.median(ms):.1f}", f"{min(ms):.1f}", f"{max(ms):.1f}"
        )
    console.print(load)

    train = Table(title=f"Local training, {options.examples} examples, batch 16, per epoch")
    for column in ("backend", "first epoch ms", "median of the rest ms"):
        train.add_column(column, justify="right")
    for backend, ms in found["train"].items():
        train.add_row(
            backend, f"{ms[0]:.0f}", f"{statistics.median(ms[1:]):.0f}" if len(ms) > 1 else ""
        )
    console.print(train)


if __name__ == "__main__":
    main()
