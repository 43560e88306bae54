"""Every benchmark in one markdown report: fedge and its anchors side by side.

    .venv/bin/python -m bench.report [--quick] [--only NAME ...] [--out bench/reports/latest.md]

Each benchmark runs as its own process (``python -m bench.NAME``, as one
would run it by hand), one after another so that none disturbs another's
timings; its printed tables go into the report under its own heading,
with the command and how long it took. The anchors are inside the
benchmarks themselves: Flower's aggregation and simulation (in
``.bench-venv``, made by ``bench/setup_flower.sh`` when missing), TFF's
simulation and aggregators, Keras and the TFLite interpreter, TF.js in Node
and in headless Chromium. The report
starts with the machine it ran on, the date and the commit.

``--quick`` gives every benchmark smaller arguments (a smoke run, minutes
instead of half an hour); the committed report is a full run. Its arguments
are chosen to finish in about 35 minutes on the project's 2-core machine
when quiet while still measuring what issue 28's table needs (the async
sweep, for one, runs only each mode's best setting; the whole sweep is
``bench/reports/async_vs_sync.md``).

The report opens with a summary (:mod:`bench.summary`): issue 28's table,
the issue's figure before, the goal, and the figure now, read from the
``RESULT name=value`` lines that the benchmarks print (:mod:`bench.results`).
The test suite's row comes from ``--suite-time``, as the report does not run
the suite. A figure that a benchmark which ran did not print is named in its
row and on stderr, and the report exits 1.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.results import Results, parse
from bench.summary import suite_verdict, table

REPO = Path(__file__).resolve().parents[1]
FLOWER_VENV = REPO / ".bench-venv"
DEFAULT_OUT = REPO / "bench" / "reports" / "latest.md"
# Terminal colour and box-drawing codes that rich may print to a pipe.
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass(frozen=True)
class Bench:
    name: str  # the module under bench/
    title: str
    args: tuple[str, ...] = ()
    quick: tuple[str, ...] = ()  # the arguments of a --quick run
    needs_flower: bool = False


BENCHES = (
    Bench(
        "aggregation_bench",
        "Server aggregation: fedge vs Flower vs TFF on identical updates",
        quick=("--updates", "10", "--elems", "200000", "--repeats", "2", "--tff-updates", "4"),
        needs_flower=True,
    ),
    Bench(
        "batch_mean_bench",
        "The weighted mean's batch kernel next to the memory pass",
        quick=("--counts", "50", "--elems", "200000", "--repeats", "3"),
    ),
    Bench(
        "simulate_bench",
        "Simulated fleets: fedge vs TFF (in-process), and a 1,000-device fleet",
        quick=("--rounds", "2", "--large-rounds", "2"),
        needs_flower=True,
    ),
    Bench(
        "fleet_scale_bench",
        "Large fleets against a real fedge serve: s/round, updates/s, RSS "
        "(10,000 devices: the Flower section)",
        args=("--devices", "10,1000", "--rounds", "5"),
        quick=("--devices", "10,1000", "--rounds", "3"),
    ),
    Bench(
        "flower_sim_bench",
        "Flower's simulation (Ray) vs fedge's thread backend, same rounds",
        args=("--sizes", "10,1000,10000", "--rounds", "4", "--flower-timeout", "400"),
        quick=("--sizes", "10,1000", "--rounds", "3"),
        needs_flower=True,
    ),
    Bench("ray_bench", "fedge: thread backend vs local Ray", quick=("--rounds", "2")),
    Bench(
        "server_ingest_bench",
        "Server ingest: durable update uploads over HTTP",
        quick=("--updates", "200"),
    ),
    Bench(
        "convert_bench",
        "Conversion and runtimes: size, time, parity, latency",
        quick=("--iters", "300"),
    ),
    Bench("converter_zoo_bench", "Conversion of the model kinds users bring"),
    Bench(
        "model_kinds_bench",
        "The whole loop per model kind: convert, serve, federate, release, predict "
        "(--quick sizes: the full table, 13 min, is bench/reports/model_kinds.md)",
        # Both runs leave the committed bench/reports/model_kinds.md alone.
        args=("--quick", "--out", "/tmp/fedge-model-kinds.md"),
        quick=("--quick", "--out", "/tmp/fedge-model-kinds-quick.md"),
    ),
    Bench(
        "predict_bench",
        "Model as a service: predict over HTTP vs in process",
        quick=("--requests", "60"),
    ),
    Bench(
        "release_download_bench",
        "Release downloads: cold, cached, resumed",
        quick=("--repeat", "3"),
    ),
    Bench("events_bench", "Event delivery delay (SSE and long-poll)", quick=("--events", "10")),
    Bench(
        "browser_bench",
        "The browser demo in headless Chromium: inference, model load, training",
        quick=("--runs", "50", "--loads", "2"),
    ),
    Bench(
        "async_vs_sync",
        "Asynchronous buffered aggregation vs synchronous rounds, 1,000 devices "
        "(each mode's best setting; the sweep: bench/reports/async_vs_sync.md)",
        args=("--best",),
        quick=("--quick",),
    ),
    Bench(
        "learning_quality",
        "Learning quality: deployed -> federated -> personalised",
        quick=("--rounds", "3", "--seeds", "1"),
    ),
    Bench(
        "poisoned_canary",
        "A poisoned release stopped at the canary",
        quick=("--rounds", "3", "--release-every", "3"),
    ),
)


def machine() -> list[str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kb / 1024 / 1024:.0f} GiB memory"
    except (OSError, ValueError, IndexError):
        pass
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    ).stdout.strip()
    return [
        f"- machine: {cpu}, {os.cpu_count()} cores{memory}; {platform.platform()}",
        f"- Python {platform.python_version()}; fedge at commit {commit or 'unknown'}",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
    ]


def ensure_flower() -> str:
    if (FLOWER_VENV / "bin" / "python").exists():
        return "present"
    done = subprocess.run(["bash", str(REPO / "bench" / "setup_flower.sh")], cwd=REPO, check=False)
    return (
        "installed" if done.returncode == 0 else f"could not be installed (exit {done.returncode})"
    )


def run(bench: Bench, quick: bool) -> tuple[str, Results | None]:
    """The benchmark's section of the report, and its RESULT figures (None
    when it failed)."""
    args = bench.quick if quick else bench.args
    command = [sys.executable, "-m", f"bench.{bench.name}", *args]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "COLUMNS": "160", "NO_COLOR": "1"}
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, check=False)
    seconds = time.monotonic() - started
    shown = " ".join(["python -m", f"bench.{bench.name}", *args])
    status = "" if done.returncode == 0 else f" — **failed, exit {done.returncode}**"
    output = _ANSI.sub("", done.stdout).rstrip()
    if done.returncode != 0:
        output += "\n" + _ANSI.sub("", done.stderr)[-3000:]
    section = f"## {bench.title}\n\n`{shown}` ({seconds:.0f} s){status}\n\n```text\n{output}\n```\n"
    return section, parse(bench.name, output) if done.returncode == 0 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller arguments: a smoke run")
    parser.add_argument("--only", nargs="*", help="benchmarks whose name contains one of these")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--suite-time",
        metavar="TEXT",
        help="the test suite's row, from a fresh clone: '27m before, 9m40s after, 0 failed'",
    )
    options = parser.parse_args()
    chosen = [b for b in BENCHES if not options.only or any(o in b.name for o in options.only)]
    if not chosen:
        parser.error(f"no benchmark matches {options.only}; names: {[b.name for b in BENCHES]}")
    if options.suite_time is not None:
        try:
            suite_verdict(options.suite_time)
        except ValueError as bad:
            parser.error(str(bad))
    head = ["# fedge benchmark report", "", *machine()]
    if any(b.needs_flower for b in chosen):
        head.append(f"- Flower's environment (.bench-venv): {ensure_flower()}")
    head.append(f"- run: {'quick (smaller arguments)' if options.quick else 'full'}\n")
    options.out.parent.mkdir(parents=True, exist_ok=True)
    sections: list[str] = []
    ran: dict[str, Results | None] = {}
    started = time.monotonic()
    for done, bench in enumerate(chosen, start=1):
        print(f"==> {bench.name} ({done}/{len(chosen)})", file=sys.stderr, flush=True)
        section, ran[bench.name] = run(bench, options.quick)
        sections.append(section)
        # Written after every benchmark: a run stopped part way keeps what it measured.
        options.out.write_text("\n".join([*head, *sections]))
    head[-1] = head[-1].rstrip("\n")
    head.append(f"- the benchmarks took {(time.monotonic() - started) / 60:.1f} min in all\n")
    summary, errors = table(ran, options.quick, options.suite_time)
    options.out.write_text("\n".join([*head, *summary, *sections]))
    print(f"report: {options.out}")
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
