"""What one request costs the server, per route, for two (or more)
checkouts side by side: CPU of the request's thread, Python calls and SQL
statements.

    .venv/bin/python -m bench.request_costs [--devices 300] [--clients 4] [--runs 3] \\
        /work/wt/base .

Each run is a fresh process of this virtual environment whose editable
install is pointed at ROOT (as :mod:`bench.fleet_ab` does), with the
embedded server (``BackgroundServer``, the fleet's, access log on) of the
tests' two-weight model (an update's bytes cost next to nothing):
``--devices`` devices enrol, ask for a task, fetch the checkpoint and
upload an update (``--clients`` keep-alive connections at
once), once timed and once under cProfile for the counts. The roots
alternate run by run.

Columns per route: the request thread's CPU (``time.thread_time`` around
the WSGI app: Flask, the hooks, the view, SQLite; not waitress's loop
thread), median over the runs; then the calls and SQL statements per
request, which do not depend on the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import cProfile, json, pstats, re, statistics, sys, tempfile, threading, time, http.client
from pathlib import Path
root, devices, clients = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
import __editable___fedge_0_1_0_finder as finder
here = finder.MAPPING["fedge"].rsplit("/", 1)[0]
for name, path in list(finder.MAPPING.items()):
    finder.MAPPING[name] = root + path[len(here):]
import flask
from fedge.server.http.app import create_app
from fedge.server.http.serve import BackgroundServer
import fedge.server.http.serve as serve_module
assert serve_module.__file__.startswith(root), serve_module.__file__
from tests.server.helpers import constant_update, tiny_model

ROUTES = [("enrol", "POST", re.compile(r"/v1/devices$")),
          ("task", "POST", re.compile(r"/v1/tasks$")),
          ("checkpoint", "GET", re.compile(r"/v1/checkpoints/")),
          ("upload", "POST", re.compile(r"/v1/rounds/\d+/updates$"))]
cpu = {name: [] for name, _, _ in ROUTES}
profiles = {}
profiling = [False]
original = flask.Flask.wsgi_app

def kind(environ):
    for name, method, pattern in ROUTES:
        if environ["REQUEST_METHOD"] == method and pattern.search(environ["PATH_INFO"]):
            return name
    return "other"

def wsgi_app(self, environ, start_response):
    route = kind(environ)
    if profiling[0]:
        key = (route, threading.get_ident())
        profile = profiles.setdefault(key, cProfile.Profile(time.thread_time))
        profile.enable()
        try:
            return original(self, environ, start_response)
        finally:
            profile.disable()
    started = time.thread_time()
    try:
        return original(self, environ, start_response)
    finally:
        if route in cpu:
            cpu[route].append(time.thread_time() - started)

flask.Flask.wsgi_app = wsgi_app
work = Path(tempfile.mkdtemp())
app = create_app(test_config={
    "data_dir": work / "server", "port": 0, "threads": 8,
    "rate_limits": {"enrol": "10000/s:100000", "tasks": "10000/s:100000",
                    "uploads": "10000/s:100000"},
    "rounds": {"target_participants": 100000, "min_participants": 1, "deadline_s": 3600,
               "over_selection": 1.0}}, initial=tiny_model())
server = BackgroundServer(app)
host, port = server.url.split("//")[1].rsplit(":", 1)

def device_steps(first, count):
    conn = http.client.HTTPConnection(host, int(port))
    def call(method, path, body=b"", headers=None):
        conn.request(method, path, body=body, headers=headers or {})
        answer = conn.getresponse()
        data = answer.read()
        assert answer.status < 300, (path, answer.status, data[:200])
        return data
    for index in range(first, first + count):
        enrolled = call("POST", "/v1/devices", b"{}", {"Content-Type": "application/json"})
        token = json.loads(enrolled)["token"]
        auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        task = json.loads(call("POST", "/v1/tasks", b"{}", auth))["task"]
        call("GET", task["checkpoint_url"], headers=auth)
        body = constant_update(task["round_id"], task["base_checkpoint"], 1e-4 * (index + 1))
        call("POST", task["upload_url"], body, {**auth, "Content-Type": "application/octet-stream"})
    conn.close()

def phase(offset):
    each = devices // clients
    threads = [threading.Thread(target=device_steps, args=(offset + c * each, each))
               for c in range(clients)]
    for thread in threads: thread.start()
    for thread in threads: thread.join()

try:
    phase(0)
    profiling[0] = True
    phase(devices)
finally:
    server.stop()
result = {"cpu_us": {r: 1e6 * statistics.median(v) for r, v in cpu.items() if v},
          "calls": {}, "sql": {}}
STATEMENTS = ("<method 'execute' of 'sqlite3.Connection' objects>",
              "<method 'executemany' of 'sqlite3.Connection' objects>")
for route in cpu:
    stats = None
    for (name, _), profile in profiles.items():
        if name == route:
            stats = pstats.Stats(profile) if stats is None else (stats.add(profile) or stats)
    if stats is None:
        continue
    requests_ = (devices // clients) * clients
    result["calls"][route] = stats.total_calls / requests_
    sql = sum(v[1] for k, v in stats.stats.items() if k[2] in STATEMENTS)
    result["sql"][route] = sql / requests_
    if len(sys.argv) > 4:  # a folder: each route's profile, for pstats
        stats.dump_stats(f"{sys.argv[4]}/{route}.prof")
print("RESULT " + json.dumps(result))
"""

ROUTES = ("enrol", "task", "checkpoint", "upload")


def one_run(
    root: str, devices: int, clients: int, dump: str | None = None
) -> dict[str, dict[str, float]]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-c", CHILD, root, str(devices), str(clients)]
    command += [dump] if dump else []
    out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"{root} failed ({out.returncode}): {out.stderr[-3000:]}")
    result: dict[str, dict[str, float]] = json.loads(lines[0][len("RESULT ") :])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=300)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profiles", help="a folder: write each route's profile there (pstats)")
    parser.add_argument("roots", nargs="+", help="checkouts of fedge (git worktrees)")
    args = parser.parse_args()
    roots = [str(Path(root).resolve()) for root in args.roots]
    runs: dict[str, list[dict[str, dict[str, float]]]] = {root: [] for root in roots}
    for run in range(args.runs):
        for root in roots if run % 2 == 0 else roots[::-1]:
            load = os.getloadavg()[0]
            result = one_run(root, args.devices, args.clients, args.profiles)
            runs[root].append(result)
            shown = " ".join(f"{r} {result['cpu_us'].get(r, float('nan')):.0f}" for r in ROUTES)
            print(f"run {run} {root}: load {load:.1f}, CPU us/request: {shown}", flush=True)
    print(
        f"\n{args.devices} devices x (enrol, task, checkpoint, upload), {args.clients} clients, "
        f"{args.runs} runs; CPU: median of the runs' medians"
    )
    print(f"{'checkout':<28} {'route':<11} {'CPU us':>8} {'calls':>8} {'SQL':>6}")
    for root, results in runs.items():
        for route in ROUTES:
            cpu = statistics.median(r["cpu_us"][route] for r in results)
            calls = statistics.median(r["calls"][route] for r in results)
            sql = statistics.median(r["sql"][route] for r in results)
            print(f"{Path(root).name:<28} {route:<11} {cpu:8.0f} {calls:8.0f} {sql:6.1f}")
    if len(roots) >= 2:
        base, *others = roots
        for other in others:
            for route in ROUTES:
                before = statistics.median(r["cpu_us"][route] for r in runs[base])
                after = statistics.median(r["cpu_us"][route] for r in runs[other])
                print(f"{Path(other).name} / {Path(base).name} {route}: CPU {after / before:.2f}x")


if __name__ == "__main__":
    main()
