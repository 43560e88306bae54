"""What secure aggregation costs a device and the server, per round.

    .venv/bin/python -m bench.secagg_bench [--devices 10 100 1000] [--dropped 0.05] [--web]

The whole SecAgg+ protocol of ``fedge.secagg`` in one process (no HTTP:
the bytes are those the routes carry), for the digits CNN's 38k weights and
a 1M-weight vector; ``--dropped`` of the devices vanish after sharing their
keys, so the server also rebuilds their keys. Columns:

* upload: a device's bytes over all stages (key advert, share bundle,
  masked input, unmask response) against a plain float32 update
  (safetensors with its header), and the ratio;
* device ms per stage (process CPU, mean over the devices): keys, shares
  (X25519 + HKDF + Shamir + AES-GCM per neighbour), masked input
  (quantise + AES-CTR masks), unmask;
* server s: CPU for routing shares, summing the masked inputs and
  unmasking (rebuilding seeds and keys, regenerating their masks).

``--web`` adds the web device (``secagg.js``) under Node: wall ms per stage
for one device, its neighbours played by the same module.

The papers: Bonawitz et al. 2017 report a 1.73x upload expansion for 2^10
devices and 2^20 values at 16 bits (complete graph); Bell et al. 2020
(SecAgg+) bring each device's neighbours to O(log n).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from fedge.secagg import SecAggAggregator, SecAggDevice
from fedge.wire.update_codec import Update, UpdateMeta, encode_update

MODELS = {"digits CNN (38k)": 38_474, "1M weights": 1_000_000}


@dataclass
class Row:
    model: str
    devices: int
    neighbours: int
    threshold: int
    upload_bytes: float
    plain_bytes: int
    device_ms: dict[str, float]
    server_s: float


def plain_update_bytes(length: int) -> int:
    meta = UpdateMeta(round_id=1, base_checkpoint="0" * 64, num_examples=10)
    return len(encode_update(Update(meta, {"w": np.zeros(length, np.float32)})))


def run(model: str, length: int, n: int, dropped_fraction: float, seed: int = 0) -> Row:
    rng = np.random.default_rng(seed)
    ids = [f"device-{i:05d}" for i in range(n)]
    devices = {d: SecAggDevice(d, 1) for d in ids}
    aggregator = SecAggAggregator(1, dropout=0.3, clip=0.5, length=length)
    cpu = {"keys": 0.0, "shares": 0.0, "masked": 0.0, "unmask": 0.0}
    sent = dict.fromkeys(ids, 0)
    server = 0.0

    def device_step(stage: str, d: str, step: object) -> object:
        started = time.process_time()
        result = step() if callable(step) else step
        cpu[stage] += time.process_time() - started
        return result

    def server_step(step: object) -> object:
        nonlocal server
        started = time.process_time()
        result = step() if callable(step) else step
        server += time.process_time() - started
        return result

    for d, device in devices.items():
        advert = device_step("keys", d, device.advertise)
        sent[d] += len(advert.to_json())  # type: ignore[attr-defined]
        server_step(lambda d=d, a=advert: aggregator.advertise(d, a))
    params = server_step(aggregator.close_advertising)
    for d, device in devices.items():
        directory = aggregator.directory_for(d)
        bundle = device_step("shares", d, lambda dev=device, di=directory: dev.share_keys(di))
        sent[d] += len(bundle.to_json())  # type: ignore[attr-defined]
        server_step(lambda b=bundle: aggregator.submit_shares(b))
    server_step(aggregator.close_sharing)
    gone = (
        set(rng.choice(ids, int(dropped_fraction * n), replace=False))
        if dropped_fraction
        else set()
    )
    for d, device in devices.items():
        if d in gone:
            continue
        values = rng.uniform(-0.5, 0.5, length)
        inbox = aggregator.inbox_for(d)
        masked = device_step(
            "masked", d, lambda dev=device, i=inbox, v=values: dev.masked_input(i, v)
        )
        sent[d] += length * 4
        server_step(lambda d=d, m=masked: aggregator.submit_masked(d, m))
    server_step(aggregator.close_upload)
    for d, device in devices.items():
        if d in gone:
            continue
        response = device_step(
            "unmask", d, lambda dev=device, d=d: dev.unmask(aggregator.unmask_request_for(d))
        )
        sent[d] += len(response.to_json())  # type: ignore[attr-defined]
        server_step(lambda d=d, r=response: aggregator.submit_unmask(d, r))
    server_step(aggregator.finish)
    survivors = n - len(gone)
    counts = {"keys": n, "shares": n, "masked": survivors, "unmask": survivors}
    return Row(
        model,
        n,
        params.neighbours,  # type: ignore[attr-defined]
        params.threshold,  # type: ignore[attr-defined]
        float(np.mean([sent[d] for d in ids if d not in gone])),
        plain_update_bytes(length),
        {stage: 1000 * cpu[stage] / counts[stage] for stage in cpu},
        server,
    )


def web_table(args: argparse.Namespace) -> Table:
    """One web device of each round, its neighbours played alongside it."""
    script = Path(__file__).parent / "secagg_web.mjs"
    table = Table(title="the web device (web/static/js/shared/secagg.js, WebCrypto under Node)")
    for column in ("model", "devices", "k", "shares KB", "keys ms", "shares ms", "masked ms"):
        table.add_column(column, justify="right")
    for model, length in MODELS.items():
        for n in args.devices:
            if length > 100_000 and n > args.big_max_devices:
                continue
            out = subprocess.run(
                ["node", str(script), str(length), str(n)],
                capture_output=True,
                text=True,
                check=True,
                timeout=600,
            ).stdout
            row = json.loads(out.strip().splitlines()[-1])
            ms = row["ms"]
            table.add_row(
                model,
                str(n),
                str(row["neighbours"]),
                f"{row['shares_bytes'] / 1024:.1f}",
                *(f"{ms[stage]:.1f}" for stage in ("keys", "shares", "masked")),
            )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--dropped", type=float, default=0.05)
    parser.add_argument(
        "--big-max-devices", type=int, default=100, help="Largest round for the 1M-weight vector."
    )
    parser.add_argument("--json", help="Also write the rows here.")
    parser.add_argument(
        "--web",
        action="store_true",
        help="Also the web device (secagg.js, WebCrypto) under Node: ms per stage.",
    )
    args = parser.parse_args()
    rows = []
    for model, length in MODELS.items():
        for n in args.devices:
            if length > 100_000 and n > args.big_max_devices:
                continue
            rows.append(run(model, length, n, args.dropped))
    table = Table(title=f"secure aggregation per round ({args.dropped:.0%} dropped after sharing)")
    for column in (
        "model",
        "devices",
        "k",
        "t",
        "upload KB",
        "plain KB",
        "ratio",
        "keys ms",
        "shares ms",
        "masked ms",
        "unmask ms",
        "server s",
    ):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(
            r.model,
            str(r.devices),
            str(r.neighbours),
            str(r.threshold),
            f"{r.upload_bytes / 1024:.1f}",
            f"{r.plain_bytes / 1024:.1f}",
            f"{r.upload_bytes / r.plain_bytes:.3f}",
            *(f"{r.device_ms[s]:.1f}" for s in ("keys", "shares", "masked", "unmask")),
            f"{r.server_s:.2f}",
        )
    Console(width=160).print(table)
    if args.web:
        Console(width=160).print(web_table(args))
    if args.json:
        with open(args.json, "w") as out:
            json.dump([r.__dict__ for r in rows], out, indent=1)


if __name__ == "__main__":
    main()
