"""The whole loop per model kind, as one markdown table: convert (each
target's parity), serve (a real ``fedge serve --model BUNDLE``), federate
(``run_fleet`` on the kind's own per-device data: deployed -> final global
-> personalised metric on the devices' data), release (cut from the last
checkpoint through the admin API, built) and predict via the server
(equal to a local TFLite run). Stages: :mod:`bench.model_kinds_loop`;
models and data: :mod:`bench.model_kinds_zoo`.

    .venv/bin/python -m bench.model_kinds_bench [--kinds KEY ...] [--quick]

Each model is trained a little on a separate sample before it is deployed
(the team's own data), then federated. ``--quick`` uses fewer examples,
one round and two pre-training epochs. The table is printed and written to
``bench/reports/model_kinds.md`` (``--out``).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.model_kinds_loop import (
    PER_ROUND,
    Cell,
    convert_cell,
    failed,
    federate_cell,
    predict_cell,
    release_cell,
    serve_cell,
    serving,
)
from bench.model_kinds_zoo import KINDS, Arrays, Kind

REPORT = Path(__file__).parent / "reports" / "model_kinds.md"
COLUMNS = ("model kind", "params", "convert", "serve", "federate", "release", "predict", "s")
PREDICT_ROWS = 4
PUBLIC_DEVICES = 4  # the team's own data, to train the deployed model on


@dataclass(frozen=True)
class Sizes:
    devices: int
    per_device: int
    rounds: int
    pretrain_epochs: int

    @classmethod
    def of(cls, quick: bool) -> Sizes:
        return cls(4, 24, 1, 2) if quick else cls(6, 48, 3, 5)


def model_inputs(model: Any, data: Arrays) -> Any:
    """What ``model.fit`` takes: the one array, or arrays by input name."""
    names = [t.name.split(":")[0] for t in model.inputs]
    if len(names) == 1:
        return data[names[0]] if names[0] in data else data["x"]
    return {n: data[n] for n in names}


def deployed_bundle(kind: Kind, sizes: Sizes, work: Path) -> tuple[Path, int, Cell]:
    """The kind's model, trained a little and converted to every target,
    parity judged on the kind's own inputs (fedge's default samples are
    uniform in [0, 1), on which a 0..255 pixel model's output is constant)."""
    from fedge.converters.bundle import convert
    from fedge.converters.options import ConvertOptions

    epochs = 1 if kind.slow else sizes.pretrain_epochs
    public = kind.data(np.random.default_rng(1), PUBLIC_DEVICES, sizes.per_device)
    model = kind.build(public)
    model.fit(model_inputs(model, public), public["y"], epochs=epochs, batch_size=16, verbose=0)
    source = work / f"model{kind.suffix}"
    model.save(source)
    held_out = kind.data(np.random.default_rng(2), 2, sizes.per_device)
    inputs = model_inputs(model, held_out)
    if not isinstance(inputs, dict):
        inputs = {model.inputs[0].name.split(":")[0]: inputs}
    np.savez(work / "samples.npz", **inputs)
    options = ConvertOptions(name=kind.key, samples_path=work / "samples.npz")
    result = convert(source, work / "bundle", options, force=True)
    return result.path, int(model.count_params()), convert_cell(result.manifest)


def loop_row(kind: Kind, sizes: Sizes, work: Path) -> list[str]:
    started = time.perf_counter()
    cells: dict[str, Cell | str] = {"model kind": kind.name, "params": ""}
    try:
        bundle, params, cells["convert"] = deployed_bundle(kind, sizes, work)
        cells["params"] = f"{params:,}"
    except Exception as exc:  # the row says why; the next kind goes on
        cells["convert"] = failed(exc)
        return _row(cells, started)
    data = kind.data(np.random.default_rng(0), sizes.devices, sizes.per_device)
    np.savez(work / "devices.npz", **data)
    try:
        with serving(bundle, work / "server", work / "server.log") as url:
            cells["serve"], name = serve_cell(url)
            cells["federate"] = _stage(
                lambda: federate_cell(url, work / "devices.npz", sizes.rounds, work / "fleet")
            )
            cells["release"] = _stage(lambda: release_cell(url))
            rows = {k: v[:PREDICT_ROWS] for k, v in data.items() if k not in ("y", "device")}
            cells["predict"] = _stage(lambda: predict_cell(url, name, bundle, rows))
    except Exception as exc:
        cells.setdefault("serve", failed(exc))
    return _row(cells, started)


def _stage(run: Any) -> Cell:
    try:
        cell: Cell = run()
    except Exception as exc:
        return failed(exc)
    return cell


def _row(cells: dict[str, Cell | str], started: float) -> list[str]:
    cells["s"] = f"{time.perf_counter() - started:.0f}"
    return [str(cells.get(column, "not reached")) for column in COLUMNS]


def markdown(rows: list[list[str]]) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "/") for c in cells) + " |"

    return "\n".join([line(list(COLUMNS)), line(["---"] * len(COLUMNS)), *map(line, rows)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    keys = [k.key for k in KINDS]
    parser.add_argument("--kinds", nargs="*", choices=keys, help="only these (default: all)")
    parser.add_argument("--quick", action="store_true", help="fewer examples, one round")
    parser.add_argument("--out", type=Path, default=REPORT, help="where to write the table")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sizes = Sizes.of(args.quick)
    kinds = [k for k in KINDS if not args.kinds or k.key in args.kinds]
    rows, started = [], time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fedge-kinds-") as tmp:
        for kind in kinds:
            work = Path(tmp) / kind.key
            work.mkdir()
            print(f"{kind.name} ...", flush=True)
            rows.append(loop_row(kind, sizes, work))
            print(markdown(rows[-1:]).splitlines()[-1], flush=True)
    cpu = platform.processor() or platform.machine()
    header = (
        f"`python -m bench.model_kinds_bench{' --quick' if args.quick else ''}`: "
        f"{sizes.devices} devices x {sizes.per_device} examples, {sizes.rounds} round(s) of "
        f"{PER_ROUND} updates; {os.cpu_count()} CPUs ({cpu}), "
        f"{time.perf_counter() - started:.0f} s in all.\n\n"
        "federate: the devices' mean metric on their own held-out data, deployed -> final "
        "global -> personalised.\n\n"
    )
    table = markdown(rows)
    print()
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("# The whole loop per model kind\n\n" + header + table + "\n")


if __name__ == "__main__":
    main()
