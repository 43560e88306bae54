"""Benchmark server aggregation: fedge vs Flower vs TFF, on identical updates.

Rows, all from this one run on the same update files:

* a plain NumPy pass over the updates (``x.sum()``): the memory-bandwidth
  reference that an aggregation reading every byte cannot beat;
* the weighted mean: fedge's ``StreamingMean`` one update at a time and
  as one batch (``add_many``, as a group commit adds them; each with and
  without its finiteness check), Flower's ``aggregate``, TFF's ``MeanFactory`` through
  TFF's runtime (smaller by default: it runs at tens of MB/s);
* the coordinate-wise median and trimmed mean: fedge's block-wise
  functions (from memory and from the safetensors files the server keeps)
  vs Flower's ``aggregate_median`` and ``aggregate_trimmed_avg``.

Flower runs in its own environment (``bench/setup_flower.sh`` makes
``.bench-venv``) with the NumPy it requires, so fedge's functions are timed
again in that process, on that NumPy, for a like-for-like ratio. Then the
peak memory growth of ``StreamingMean`` over 10 and 1,000 updates (made one
at a time, in a fresh process each) relative to the model size.

    .venv/bin/python -m bench.aggregation_bench [--updates 50] [--elems 1000000]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from bench.results import emit
from fedge.blas_threads import single_blas_thread
from fedge.server.aggregation.kernels import (
    InMemoryUpdates,
    SafetensorsFileUpdates,
    StreamingMean,
    coordinate_median,
    trimmed_mean,
)
from fedge.wire.update_codec import Update, UpdateMeta, Weights, encode_update

REPO_ROOT = Path(__file__).resolve().parent.parent
FLOWER_PYTHON = REPO_ROOT / ".bench-venv" / "bin" / "python"


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median seconds of ``repeats`` calls after one warm-up call."""
    return interleaved({"fn": fn}, repeats)["fn"]


def interleaved(runs: Mapping[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each run over ``repeats`` rounds (after a warm-up),
    taking turns so that load from other processes falls on all alike."""
    for fn in runs.values():
        fn()
    seconds: dict[str, list[float]] = {key: [] for key in runs}
    for _ in range(repeats):
        for key, fn in runs.items():
            started = time.perf_counter()
            fn()
            seconds[key].append(time.perf_counter() - started)
    return {key: statistics.median(values) for key, values in seconds.items()}


def make_updates(
    count: int, elems: int, tensors: int, seed: int
) -> tuple[list[Weights], list[int]]:
    rng = np.random.default_rng(seed)
    sizes = [len(part) for part in np.array_split(np.arange(elems), tensors)]
    updates = [
        {
            f"layer{j}/kernel": rng.standard_normal(size, dtype=np.float32)
            for j, size in enumerate(sizes)
        }
        for _ in range(count)
    ]
    return updates, [int(n) for n in rng.integers(1, 100, size=count)]


def write_files(directory: Path, updates: list[Weights], examples: list[int]) -> list[Path]:
    """.npy files for Flower, safetensors update files for fedge's server path."""
    names = list(updates[0])
    paths = []
    for i, (weights, count) in enumerate(zip(updates, examples, strict=True)):
        for j, name in enumerate(names):
            np.save(directory / f"u{i}-{j}.npy", weights[name])
        meta = UpdateMeta(round_id=1, base_checkpoint="0" * 64, num_examples=count)
        path = directory / f"u{i}.safetensors"
        path.write_bytes(encode_update(Update(meta=meta, deltas=weights)))
        paths.append(path)
    layout = {"names": names, "updates": len(updates), "num_examples": examples}
    (directory / "layout.json").write_text(json.dumps(layout))
    return paths


def fedge_view() -> Path:
    """A directory where ``import fedge.server`` works without installing fedge
    (Flower's venv has no fedge): the package view that ``scripts/typecheck.py``
    builds in ``.typecheck/`` (``server/`` as ``fedge/server``, and so on)."""
    script = REPO_ROOT / "scripts" / "typecheck.py"
    spec = importlib.util.spec_from_file_location("typecheck", script)
    assert spec is not None and spec.loader is not None
    typecheck = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(typecheck)
    typecheck.build_view()
    return REPO_ROOT / ".typecheck"


def run_flower(directory: Path, repeats: int, trim: float) -> dict[str, Any] | None:
    if not FLOWER_PYTHON.exists():
        return None
    # One BLAS thread, as in the server process (fedge.blas_threads); Flower's
    # functions use no BLAS.
    env = {**os.environ, "PYTHONPATH": str(fedge_view()), "OPENBLAS_NUM_THREADS": "1"}
    command = [str(FLOWER_PYTHON), str(REPO_ROOT / "bench" / "flower_worker.py"), str(directory)]
    command += ["--repeats", str(repeats), "--trim", str(trim)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def tff_mean_seconds(count: int, elems: int, repeats: int) -> tuple[float, float]:
    """TFF's MeanFactory through its runtime, and fedge's StreamingMean on
    the same (smaller) data."""
    import tensorflow_federated as tff

    from fedge.client_sim.tff.runtime import tff_execution_context

    rng = np.random.default_rng(1)
    values = [rng.standard_normal(elems, dtype=np.float32) for _ in range(count)]
    weights = [float(w) for w in rng.integers(1, 100, size=count)]
    process = tff.aggregators.MeanFactory().create(
        tff.TensorType(np.float32, [elems]), tff.TensorType(np.float32)
    )
    with tff_execution_context():
        state = process.initialize()
        theirs = timed(lambda: process.next(state, values, weights), repeats)

    def ours() -> object:
        mean = StreamingMean()
        for value, weight in zip(values, weights, strict=True):
            mean.add({"w": value}, weight)
        return mean.result()

    return theirs, timed(ours, max(repeats, 5))


def rss_child(count: int, elems: int) -> None:
    """Peak RSS growth while adding ``count`` updates made one at a time."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal(elems, dtype=np.float32)
    mean = StreamingMean()
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to now
    before = _status_kib("VmRSS")
    for i in range(count):
        delta = {"w": base * np.float32(1 + i % 7)}  # a fresh array, as if just decoded
        mean.add(delta, 1 + i % 5)
        del delta
    mean.result()
    print(json.dumps({"growth_kib": _status_kib("VmHWM") - before}))


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def rss_growth_kib(count: int, elems: int) -> int:
    command = [sys.executable, "-m", "bench.aggregation_bench", "--rss-child", str(count)]
    command += ["--elems", str(elems)]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    return int(json.loads(done.stdout.strip().splitlines()[-1])["growth_kib"])


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=50)
    parser.add_argument("--elems", type=int, default=1_000_000, help="float32 per update")
    parser.add_argument("--tensors", type=int, default=1, help="split each update in N tensors")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--trim", type=float, default=0.2)
    parser.add_argument("--tff-updates", type=int, default=10)
    parser.add_argument("--tff-elems", type=int, default=1_000_000)
    parser.add_argument("--tff-repeats", type=int, default=2)
    parser.add_argument("--no-tff", action="store_true")
    parser.add_argument("--rss-counts", default="10,1000")
    parser.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    return parser.parse_args()


def measure_fedge(
    updates: list[Weights], examples: list[int], paths: list[Path], args: argparse.Namespace
) -> dict[str, float]:
    """Median seconds of each fedge aggregation, in this process."""

    def mean(check: bool) -> Callable[[], object]:
        def run() -> object:
            acc = StreamingMean()
            for weights, count in zip(updates, examples, strict=True):
                acc.add(weights, count, check_finite=check)
            return acc.result()

        return run

    def batch(check: bool) -> Callable[[], object]:
        def run() -> object:
            acc = StreamingMean()
            acc.add_many(updates, examples, check_finite=check)
            return acc.result()

        return run

    # The server's fold of a group commit (RoundSum.add_many): the batch
    # added in place to a running sum, unchecked (each update was checked
    # when it was accepted).
    running = StreamingMean()
    running.add_many(updates, examples)

    memory = InMemoryUpdates(updates)
    files = SafetensorsFileUpdates(paths)
    fast = {
        "memory_pass": lambda: [a.sum() for u in updates for a in u.values()],
        "mean": mean(True),
        "mean_unchecked": mean(False),
        "batch": batch(True),
        "batch_unchecked": batch(False),
        "fold": lambda: running.add_many(updates, examples, check_finite=False),
    }
    robust = {
        "median": lambda: coordinate_median(memory),
        "median_files": lambda: coordinate_median(files),
        "trimmed": lambda: trimmed_mean(memory, args.trim),
        "trimmed_files": lambda: trimmed_mean(files, args.trim),
    }
    return {
        **interleaved(fast, args.repeats),
        **interleaved(robust, max(1, min(args.repeats, 3))),
    }


class ResultTable:
    """One table; every row says its implementation, NumPy and data size."""

    def __init__(self, title: str) -> None:
        self.table = Table(title=title)
        for column in ("aggregation", "implementation", "NumPy", "data", "median s", "GB/s"):
            self.table.add_column(column, justify="left" if column != "median s" else "right")
        self.table.add_column("of memory pass", justify="right")
        self.table.add_column("fedge speed-up", justify="right")
        self.memory_pass: float | None = None

    def row(
        self, kind: str, impl: str, numpy: str, seconds: float, shape: tuple[int, int], vs: str = ""
    ) -> None:
        """A row; its share of the memory pass is against the last memory pass row."""
        count, elems = shape
        data = f"{count}x{elems:,}"
        rate = count * elems * 4 / 1e9 / seconds
        if kind == "memory pass":
            self.memory_pass = seconds
        share = f"{self.memory_pass / seconds:.0%}" if self.memory_pass else ""
        self.table.add_row(kind, impl, numpy, data, f"{seconds:.3f}", f"{rate:.2f}", share, vs)

    def section(self) -> None:
        """A new section: its rows are shares of its own memory pass, if any."""
        self.table.add_section()
        self.memory_pass = None

    def flower_rows(self, flower: dict[str, Any], shape: tuple[int, int]) -> None:
        """Flower's rows and fedge's, timed in Flower's process and NumPy."""
        t = {key: statistics.median(values) for key, values in flower["times"].items()}
        numpy2, version = flower["numpy"], flower["flwr"]
        self.row("memory pass", "NumPy x.sum() (reference)", numpy2, t["memory_pass"], shape)
        for kind, label in (
            ("mean", "aggregate"),
            ("median", "aggregate_median"),
            ("trimmed", "aggregate_trimmed_avg"),
        ):
            speedup = f"{t[f'flower_{kind}'] / t[f'ours_{kind}']:.1f}x"
            self.row(kind, f"Flower {version} {label}", numpy2, t[f"flower_{kind}"], shape)
            impl = (
                "fedge add_many, same process, NumPy"
                if kind == "mean"
                else "fedge, same process and NumPy"
            )
            self.row(kind, impl, numpy2, t[f"ours_{kind}"], shape, speedup)


def main() -> None:
    args = parse_args()
    if args.rss_child is not None:
        rss_child(args.rss_child, args.elems)
        return
    # As the server runs it: BLAS products in the calling thread only.
    single_blas_thread()
    console = Console(width=150)
    shape = (args.updates, args.elems)
    gigabytes = args.updates * args.elems * 4 / 1e9
    console.print(f"{args.updates} updates x {args.elems:,} float32 ({gigabytes:.2f} GB) ...")
    updates, examples = make_updates(args.updates, args.elems, args.tensors, seed=0)
    with tempfile.TemporaryDirectory(prefix="fedge-aggbench-") as tmp:
        paths = write_files(Path(tmp), updates, examples)
        ours = measure_fedge(updates, examples, paths, args)
        console.print("Flower (in .bench-venv) ...")
        flower = run_flower(Path(tmp), max(1, min(args.repeats, 3)), args.trim)
    tff_times = None
    if not args.no_tff:
        console.print(f"TFF MeanFactory ({args.tff_updates} x {args.tff_elems:,}) ...")
        tff_times = tff_mean_seconds(args.tff_updates, args.tff_elems, args.tff_repeats)

    out = ResultTable(f"server aggregation, {args.updates} updates x {args.elems:,} float32")
    here = np.__version__
    out.row("memory pass", "NumPy x.sum() (reference)", here, ours["memory_pass"], shape)
    out.row("weighted mean", "fedge StreamingMean", here, ours["mean"], shape)
    out.row("weighted mean", "fedge, check_finite=False", here, ours["mean_unchecked"], shape)
    out.row("weighted mean", "fedge add_many (one batch)", here, ours["batch"], shape)
    out.row("weighted mean", "fedge add_many, unchecked", here, ours["batch_unchecked"], shape)
    out.row("weighted mean", "fedge fold into a running sum", here, ours["fold"], shape)
    out.row("median", "fedge coordinate_median", here, ours["median"], shape)
    out.row("median", "fedge, from safetensors files", here, ours["median_files"], shape)
    out.row("trimmed mean", f"fedge trimmed_mean({args.trim})", here, ours["trimmed"], shape)
    out.row("trimmed mean", "fedge, from safetensors files", here, ours["trimmed_files"], shape)
    out.section()
    if flower is None:
        out.table.add_row("Flower", "not measured: .bench-venv is missing", *[""] * 6)
        console.print("[yellow]Flower's venv is missing: run bench/setup_flower.sh[/yellow]")
    else:
        out.flower_rows(flower, shape)
        diffs = ", ".join(f"{k} {v:.1e}" for k, v in flower["max_abs_diff"].items())
        console.print(f"max |fedge - Flower| on the same NumPy: {diffs}")
    if tff_times is not None:
        tff_shape = (args.tff_updates, args.tff_elems)
        out.section()
        out.row("weighted mean", "TFF MeanFactory via its runtime", here, tff_times[0], tff_shape)
        speedup = f"{tff_times[0] / tff_times[1]:.0f}x"
        out.row("weighted mean", "fedge StreamingMean", here, tff_times[1], tff_shape, speedup)
    console.print(out.table)
    console.print(memory_table(args.elems, [int(c) for c in args.rss_counts.split(",")]))
    emit_results(ours, flower, gigabytes)


def emit_results(ours: dict[str, float], flower: dict[str, Any] | None, gigabytes: float) -> None:
    """The figures ``bench.report``'s summary reads (:mod:`bench.results`):
    the weighted mean's share of the memory pass in this process, and each
    aggregation against Flower's in Flower's process and NumPy."""
    emit("memory_pass_gbps", gigabytes / ours["memory_pass"])
    emit("add_many_gbps", gigabytes / ours["batch"])
    emit("add_many_share", ours["memory_pass"] / ours["batch"])
    emit("mean_share", ours["memory_pass"] / ours["mean"])
    if flower is None:
        return
    t = {key: statistics.median(values) for key, values in flower["times"].items()}
    for kind in ("mean", "median", "trimmed"):
        emit(f"flower_{kind}_gbps", gigabytes / t[f"flower_{kind}"])
        emit(f"fedge_{kind}_gbps", gigabytes / t[f"ours_{kind}"])
        emit(f"{kind}_vs_flower", t[f"flower_{kind}"] / t[f"ours_{kind}"])


def memory_table(elems: int, counts: list[int]) -> Table:
    model_kib = elems * 4 / 1024
    table = Table(
        title=f"peak RSS growth of StreamingMean, {elems:,} float32 ({model_kib / 1024:.1f} MiB)",
        caption="float64 sum (2x model) + the update being added (1x) + the float32 result (1x)",
    )
    for column in ("updates added", "peak growth MiB", "x model size"):
        table.add_column(column, justify="right")
    for count in counts:
        growth = rss_growth_kib(count, elems)
        table.add_row(f"{count:,}", f"{growth / 1024:.1f}", f"{growth / model_kib:.2f}")
    return table


if __name__ == "__main__":
    main()
