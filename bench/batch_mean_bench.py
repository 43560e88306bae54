"""Benchmark the weighted mean's batch kernel against NumPy's memory pass.

One process, one set of updates, every row timed in turn (``interleaved``)
so that load from other processes falls on all rows alike. Rows per batch
size K (updates of ``--elems`` float32 each):

* the memory pass, ``x.sum()`` over every update: the reference that an
  aggregation reading every byte cannot beat;
* ``add_many`` into an empty mean, then ``result()`` (a round's first
  batch, and the ``add_many`` rows of ``bench.aggregation_bench``);
* the server's fold (``RoundSum.add_many``): the batch added in place to
  a running sum, unchecked, with the kernel's block shape and with the
  shape of the first version of the kernel (8192 coordinates x all K
  updates) for comparison;
* one update at a time (``StreamingMean.add``), the path of a lone upload.

BLAS runs in the calling thread only, as in the server.

    .venv/bin/python -m bench.batch_mean_bench [--counts 10,50,200] [--elems 1000000]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
from rich.console import Console
from rich.table import Table

from bench.aggregation_bench import interleaved
from bench.results import emit
from fedge.blas_threads import single_blas_thread
from fedge.server.aggregation.blocked import add_weighted, block_elems, group_rows
from fedge.server.aggregation.kernels import StreamingMean


def rows_for(count: int, elems: int) -> dict[str, Callable[[], object]]:
    rng = np.random.default_rng(count)
    flats = [rng.standard_normal(elems, dtype=np.float32) for _ in range(count)]
    updates = [{"w": flat} for flat in flats]
    weights = [float(w) for w in rng.integers(1, 100, size=count)]
    running = np.zeros(elems)

    def fresh() -> object:
        mean = StreamingMean()
        mean.add_many(updates, weights)
        return mean.result()

    def one_by_one() -> object:
        mean = StreamingMean()
        for update, weight in zip(updates, weights, strict=True):
            mean.add(update, weight, check_finite=False)
        return mean.result()

    def fold(shape: tuple[int, int] | None) -> Callable[[], object]:
        return lambda: add_weighted(
            running, flats, weights, name="w", check_finite=False, shape=shape
        )

    return {
        "memory pass, NumPy x.sum()": lambda: [flat.sum() for flat in flats],
        "add_many into an empty mean + result()": fresh,
        f"fold in place, {group_rows(count)} x {block_elems(count)} blocks": fold(None),
        f"fold in place, {count} x 8192 blocks (before)": fold((count, 8192)),
        "one update at a time (add)": one_by_one,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="10,50,200", help="batch sizes K")
    parser.add_argument("--elems", type=int, default=1_000_000, help="float32 per update")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    single_blas_thread()
    console = Console(width=130)
    table = Table(title=f"weighted mean of K updates x {args.elems:,} float32, one core")
    for column in ("K", "row", "median ms", "GB/s", "of memory pass"):
        table.add_column(column, justify="left" if column == "row" else "right")
    figures: list[tuple[str, float]] = []
    for count in (int(c) for c in args.counts.split(",")):
        console.print(f"K = {count} ...")
        seconds = interleaved(rows_for(count, args.elems), args.repeats)
        memory = next(iter(seconds.values()))
        # The server's fold with the kernel's own block shape.
        fold = next(v for k, v in seconds.items() if k.startswith("fold") and "before" not in k)
        figures += [
            (f"fold_share_k{count}", memory / fold),
            (f"fold_gbps_k{count}", count * args.elems * 4 / 1e9 / fold),
        ]
        for label, value in seconds.items():
            rate = count * args.elems * 4 / 1e9 / value
            share = f"{memory / value:.0%}"
            table.add_row(str(count), label, f"{value * 1e3:.1f}", f"{rate:.2f}", share)
        table.add_section()
    console.print(table)
    for name, value in figures:  # for bench.report's summary (bench.results)
        emit(name, value)


if __name__ == "__main__":
    main()
