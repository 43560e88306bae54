"""Where a large fleet's rounds spend their time: py-spy samples of the
fleet (devices, embedded server, TFLite runtimes: one process) during its
rounds only, summarised as two short tables.

    .tools/bin/uv pip install --python .venv/bin/python py-spy   # once, not a dependency
    .venv/bin/python -m bench.fleet_profile [--devices 1000] [--per-round 100] [--out FILE]

Sampling starts when the first round has been reported (setup, enrolment
and the deployed model's scoring are left out) and stops when the last one
is. The tables (py-spy's "active" samples: threads it did not see idle;
a thread in fsync, or blocked reading a socket, may count as active):

* active threads, self: the function each sample was in;
* active threads, inclusive: fedge's functions on the stack.

py-spy sees Python threads only: native threads (OpenBLAS's pool, say)
need ``perf record -p PID`` and ``perf report --sort dso,sym``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from fedge.client_sim.fleet.config import FleetConfig
from fedge.client_sim.fleet.run import run_fleet
from fedge.client_sim.report.fleet_report import RoundReport

TOP = 12
# Frames of fedge's own code (the installed package maps onto these folders);
# py-spy names a file loaded from outside sys.path by its bare name.
FEDGE_FRAME = re.compile(r"[(/](server|client_sim|fedge)/")
ROOT = Path(__file__).resolve().parent.parent
FEDGE_FILES = {f.name for d in ("server", "client_sim", "fedge") for f in (ROOT / d).glob("*.py")}


def _is_fedge(frame: str) -> bool:
    path = frame.partition(" (")[2].rpartition(":")[0]
    return bool(FEDGE_FRAME.search(frame)) or ("/" not in path and path in FEDGE_FILES)


# Frames that hold every sample of their thread: no information.
WRAPPERS = {"run_fleet (fleet.py)", "_run (fleet.py)"}


def _frame_name(frame: str) -> str:
    """``func (path/file.py:123)`` -> ``func (file.py)``: one row per function."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rpartition(":")[0]
    return f"{name} ({Path(path).name})"


def _stacks(raw: str) -> list[tuple[str, list[str], int]]:
    """(thread, frames root first, samples) from py-spy's raw (collapsed) output."""
    stacks = []
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        thread, *frames = stack.split(";")
        if frames:
            stacks.append((thread, frames, int(count)))
    return stacks


def _table(title: str, counts: Counter[str]) -> list[str]:
    total = sum(counts.values())
    rows = [f"  {100 * n / max(total, 1):5.1f}%  {name}" for name, n in counts.most_common(TOP)]
    return [f"{title} ({total} samples)", *rows]


def summarise(active_raw: str) -> str:
    """Self and inclusive time of the threads that were not idle (all
    threads: devices, server, runtimes)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for _, frames, count in _stacks(active_raw):
        total += count
        own[_frame_name(frames[-1])] += count
        ours = {_frame_name(f) for f in frames if _is_fedge(f)}
        for name in ours - WRAPPERS:
            inclusive[name] += count
    lines = _table("active threads, self", own)
    lines += [f"active threads, inclusive, fedge's functions (of the {total} above)"]
    lines += [
        f"  {100 * n / max(total, 1):5.1f}%  {name}" for name, n in inclusive.most_common(TOP)
    ]
    return "\n".join(lines)


def _stop(samplers: list[subprocess.Popen[bytes]]) -> None:
    """SIGINT: py-spy writes what it sampled and exits."""
    for process in samplers:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    for process in samplers:
        process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--per-round", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--rate", type=int, default=100, help="samples per second")
    parser.add_argument("--out", type=Path, help="also write the tables here")
    parser.add_argument(
        "--gil", action="store_true", help="only samples of the thread holding the GIL"
    )
    parser.add_argument("--raw", type=Path, help="also keep py-spy's raw (collapsed) stacks here")
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    with tempfile.TemporaryDirectory(prefix="fedge-profile-") as tmp:
        raw = Path(tmp) / "active.raw"
        samplers: list[subprocess.Popen[bytes]] = []
        seconds: list[float] = []

        def on_round(report: RoundReport) -> None:
            print(f"round {report.round_id}: {report.seconds:.2f} s", flush=True)
            if samplers:
                seconds.append(report.seconds)
            if len(seconds) == args.rounds - 1:  # the last one: stop sampling
                _stop(samplers)
            elif not samplers:  # the first one: start sampling
                command = [spy, "record", "--pid", str(os.getpid()), "--threads"]
                command += ["-r", str(args.rate), "-f", "raw", "-o", str(raw)]
                command += ["--gil"] if args.gil else []
                samplers.append(subprocess.Popen(command, stdout=subprocess.DEVNULL))

        try:
            run_fleet(
                FleetConfig(
                    devices=args.devices,
                    per_round=args.per_round,
                    rounds=args.rounds,
                    seed=0,
                    workers=args.workers,
                    min_examples=1,
                    public_fraction=0.0,
                ),
                progress=on_round,
            )
        finally:
            _stop(samplers)
        header = (
            f"{args.devices} devices, {args.per_round} per round: rounds 2..{args.rounds} "
            f"sampled, median {statistics.median(seconds):.2f} s/round"
        )
        text = header + "\n" + summarise(raw.read_text())
        if args.raw is not None:
            shutil.copyfile(raw, args.raw)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
