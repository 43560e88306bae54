"""Seconds per round of the thread fleet from two (or more) checkouts of
fedge, side by side in one run: before and after a change.

Each variant is ``ROOT:WORKERS``: a checkout (a git worktree of ``main``,
say) and the fleet's worker count. Every run is a fresh process of this
virtual environment whose editable install is pointed at ROOT (the
checkouts share one .venv, so only fedge's code differs); the variants
alternate run by run, so load on a shared machine falls on each alike.

    .venv/bin/python -m bench.fleet_ab --devices 1000 --rounds 5 --runs 2 \\
        /work/wt/fleet-base:8 .:8 .:16

Prints each run's rounds and the load average, then per variant the median
of rounds 2.. over all its runs (round 1 apart: every device's first
check-in).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

# Run in the child: repoint the editable install at ROOT, run the fleet.
CHILD = """
import json, sys
root, devices, workers, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
import __editable___fedge_0_1_0_finder as finder
here = finder.MAPPING["fedge"].rsplit("/", 1)[0]
for name, path in list(finder.MAPPING.items()):
    finder.MAPPING[name] = root + path[len(here):]
from fedge.client_sim.fleet.config import FleetConfig
from fedge.client_sim.fleet.run import run_fleet
import fedge.client_sim.fleet.threads as threads
assert threads.__file__.startswith(root), threads.__file__
seconds = []
config = FleetConfig(devices=devices, per_round=100, rounds=rounds, seed=0, workers=workers,
                     min_examples=1, public_fraction=0.0)
run_fleet(config, progress=lambda report: seconds.append(report.seconds))
print("RESULT " + json.dumps(seconds))
"""


def one_run(root: str, devices: int, workers: str, rounds: int) -> list[float]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-c", CHILD, root, str(devices), workers, str(rounds)]
    out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3600)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"{root} failed ({out.returncode}): {out.stderr[-2000:]}")
    seconds: list[float] = json.loads(lines[0][len("RESULT ") :])
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("variants", nargs="+", help="ROOT:WORKERS")
    args = parser.parse_args()
    variants = [
        (str(Path(v.rpartition(":")[0]).resolve()), v.rpartition(":")[2]) for v in args.variants
    ]
    results: dict[tuple[str, str], list[list[float]]] = {v: [] for v in variants}
    for run in range(args.runs):
        for root, workers in variants if run % 2 == 0 else variants[::-1]:
            load = os.getloadavg()[0]
            seconds = one_run(root, args.devices, workers, args.rounds)
            results[(root, workers)].append(seconds)
            shown = " ".join(f"{s:.2f}" for s in seconds)
            print(
                f"run {run} {root} workers {workers}: load {load:.1f}, rounds {shown}", flush=True
            )
    print(f"\n{args.devices} devices, 100 per round, {args.rounds} rounds x {args.runs} runs")
    for (root, workers), runs in results.items():
        later = [s for seconds in runs for s in seconds[1:]]
        first = statistics.median(seconds[0] for seconds in runs)
        print(
            f"  {root} workers {workers}: median {statistics.median(later):.2f} s/round "
            f"(rounds 2..{args.rounds}), round 1 median {first:.2f} s"
        )


if __name__ == "__main__":
    main()
