"""The storage half of ingest alone: how long a group commit's updates take
to be durable, one file each (the ingest before segments: temp file, fsync,
rename in each upload's thread, then one directory fsync) against one
segment append (``fedge.server.storage.segments``: one write and one
``fdatasync``, with ``O_DIRECT`` and as on a file system without it).

    .venv/bin/python -m bench.segment_write_bench [--batches 40] [--batch 8] [--mb 1.0] [--repeat 3]

Prints per way the median over repeats of wall ms and CPU ms (this
process, user + system) per update, side by side in one run, in a
temporary directory on the file system of ``--dir`` (default: /tmp).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rich.console import Console
from rich.table import Table

from fedge.server.storage import segments
from fedge.server.storage.durable import fsync_dir, write_atomically
from fedge.server.storage.segments import SegmentWriter, frame_header

Way = Callable[[Path, list[list[bytes]]], None]


def per_file(root: Path, batches: list[list[bytes]]) -> None:
    with ThreadPoolExecutor(len(batches[0])) as pool:
        for number, batch in enumerate(batches):
            paths = [root / "r000001" / f"d{number}-{i}.safetensors" for i in range(len(batch))]
            list(pool.map(_write_unsynced, paths, batch))
            fsync_dir(root / "r000001")


def _write_unsynced(path: Path, data: bytes) -> None:
    write_atomically(path, data, sync_dir=False)


# Frames are made before the timing: the ingest takes the sha256 from the
# upload's digest (an update stored as received), so it costs nothing more.
_HEADERS: dict[int, bytes] = {}


def segment(root: Path, batches: list[list[bytes]]) -> None:
    writer = SegmentWriter(root)
    for batch in batches:
        writer.append(1, [(_HEADERS[id(p)], p) for p in batch])
    writer.close()


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(way: Way, directory: Path, batches: list[list[bytes]]) -> tuple[float, float]:
    count = sum(len(b) for b in batches)
    with tempfile.TemporaryDirectory(prefix="segbench-", dir=directory) as tmp:
        cpu, started = cpu_s(), time.perf_counter()
        way(Path(tmp), batches)
        wall = time.perf_counter() - started
        return wall / count * 1000, (cpu_s() - cpu) / count * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch", type=int, default=8, help="updates per group commit")
    parser.add_argument("--mb", type=float, default=1.0, help="size of an update")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    size = int(args.mb * 1e6)
    batches = [[os.urandom(size) for _ in range(args.batch)] for _ in range(args.batches)]
    _HEADERS.update((id(p), frame_header(p)) for batch in batches for p in batch)
    direct = getattr(os, "O_DIRECT", 0)

    def buffered(root: Path, batches: list[list[bytes]]) -> None:
        os_direct = getattr(os, "O_DIRECT", None)
        if os_direct is not None:
            del os.O_DIRECT  # as on a file system without it
        try:
            segment(root, batches)
        finally:
            if os_direct is not None:
                os.O_DIRECT = os_direct

    ways: dict[str, Way] = {"file + fsync per update (before)": per_file}
    ways["segment, O_DIRECT" if direct else "segment"] = segment
    if direct:
        ways["segment, buffered"] = buffered
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
    for _ in range(args.repeat):
        for name, way in ways.items():
            results[name].append(measure(way, args.dir, batches))
    table = Table(
        title=f"{args.batches} group commits of {args.batch} updates of {args.mb} MB,"
        f" median of {args.repeat} (load {os.getloadavg()[0]:.1f}, block {segments.BLOCK})"
    )
    for column in ("way", "wall ms / update", "CPU ms / update", "wall vs before"):
        table.add_column(column, justify="right" if column != "way" else "left")
    before = statistics.median(w for w, _ in results[next(iter(ways))])
    for name, runs in results.items():
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        table.add_row(name, f"{wall:.2f}", f"{cpu:.2f}", f"{wall / before:.2f}x")
    Console().print(table)


if __name__ == "__main__":
    main()
