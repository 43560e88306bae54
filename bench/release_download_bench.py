"""Release delivery: push -> event delay, download MB/s, and a Range resume.

Starts ``fedge serve`` (a child process) from a bundle, pushes a second
release and times the ``release`` event at a long-poll subscriber, then
downloads the bundle with the device client (``download_bundle``, 1 MiB
Range chunks, every file checked against its sha256) several times, and
once more after a download cut off halfway (only the missing bytes move).

    .venv/bin/python -m bench.release_download_bench [--bundle DIR] [--repeat 10]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import requests
from rich.console import Console
from rich.table import Table

from fedge.bundle.manifest import open_bundle
from fedge.bundle.tar import pack_bundle
from fedge.client_sim.device.bundle_download import download_bundle
from fedge.client_sim.device.client import FedgeClient
from fedge.client_sim.device.events import poll_events
from fedge.client_sim.device.transport import HttpTransport, TransportError
from tests.helpers.live_server import running
from tests.helpers.network_gone import NetworkGoneAfter

ADMIN = {"Authorization": "Bearer admin-secret"}


def reference_bundles(work: Path) -> tuple[Path, Path]:
    """Two releases of the reference CNN (TFLite, TF.js and Core ML), other weights."""
    import tensorflow as tf

    from fedge.converters.bundle import convert
    from fedge.converters.options import ConvertOptions
    from fedge.reference.model import build_reference_model

    paths = []
    for seed in (0, 1):
        tf.keras.utils.set_random_seed(seed)
        model_path = work / f"m{seed}.keras"
        build_reference_model().save(model_path)
        convert(model_path, work / f"b{seed}", ConvertOptions(verify=False, seed=seed))
        paths.append(work / f"b{seed}")
    return paths[0], paths[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    console = Console(width=160)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        first, second = reference_bundles(work)
        size = sum(int(f["bytes"]) for f in open_bundle(first).manifest.files())
        with running(work / "data", ["--model", str(first)], work / "server.log") as server:
            delay = push_to_event(server.url, second)
            client = FedgeClient(HttpTransport(server.url))
            client.enrol(platform="bench")
            bundle_id = open_bundle(first).bundle_id
            seconds = []
            for i in range(args.repeat):
                started = time.perf_counter()
                download_bundle(client, bundle_id, work / f"dl{i}")
                seconds.append(time.perf_counter() - started)
                shutil.rmtree(work / f"dl{i}")
            resumed, fetched = resume(server.url, client, bundle_id, work / "resumed", size)
    table = Table(title=f"release delivery: reference CNN bundle, {size / 1e6:.2f} MB of files")
    for column in ("measure", "value"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    table.add_row("push -> release event at a long-poll subscriber", f"{delay * 1e3:.1f} ms")
    median = statistics.median(seconds)
    table.add_row(f"download, median of {args.repeat}", f"{median * 1e3:.1f} ms")
    table.add_row("download throughput", f"{size / median / 1e6:.1f} MB/s")
    table.add_row("resume after a cut: time", f"{resumed * 1e3:.1f} ms")
    table.add_row(
        "resume after a cut: bytes fetched", f"{fetched / 1e6:.2f} MB of {size / 1e6:.2f}"
    )
    console.print(table)


def push_to_event(url: str, bundle: Path) -> float:
    """Seconds from sending the push to the ``release`` event's arrival."""
    cursor = poll_events(url, after=None, timeout=0).last_id
    tar = io.BytesIO()
    pack_bundle(bundle, tar)
    started = time.perf_counter()
    reply = requests.post(
        f"{url}/v1/releases",
        data=tar.getvalue(),
        headers={**ADMIN, "Content-Type": "application/x-tar"},
        timeout=120,
    )
    reply.raise_for_status()
    while True:
        page = poll_events(url, after=cursor, timeout=10, types=("release",))
        if page.events:
            return time.perf_counter() - started
        cursor = page.last_id


def resume(
    url: str, client: FedgeClient, bundle_id: str, dest: Path, size: int
) -> tuple[float, int]:
    """Cut a download off after half its chunks, then finish it: (s, bytes)."""
    cut = FedgeClient(NetworkGoneAfter(url, 2 + max(1, size // (256 * 1024) // 2)))
    cut.token, cut.device_id = client.token, client.device_id
    with contextlib.suppress(TransportError):
        download_bundle(cut, bundle_id, dest, chunk_bytes=256 * 1024)
    again = FedgeClient(HttpTransport(url))
    again.token, again.device_id = client.token, client.device_id
    started = time.perf_counter()
    download_bundle(again, bundle_id, dest, chunk_bytes=256 * 1024)
    return time.perf_counter() - started, again.bytes_down


if __name__ == "__main__":
    main()
