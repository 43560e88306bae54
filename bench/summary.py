"""The summary at the top of ``bench/reports/latest.md``: issue 28's table,
before and now.

One row per row of the issue's table. "before" is the issue's own figure,
quoted from its text; "now" is computed from the ``RESULT`` lines
(:mod:`bench.results`) that this run's benchmarks printed; "met" compares
"now" with the goal. The test suite's row takes its figures from
``bench.report --suite-time`` (the report does not run the suite).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from bench.results import ResultMissing, Results, need

# A row's verdict: the "now" cell, and whether the goal is met (None: not judged).
Verdict = tuple[str, bool | None]
Get = Callable[[str], float]


@dataclass(frozen=True)
class Row:
    measure: str
    before: str  # quoted from issue 28
    goal: str
    bench: str  # the benchmark whose RESULT lines give "now"
    judge: Callable[[Get], Verdict]
    quick_note: str = ""  # what "now" says in a --quick run that skips the figure


def _vs_flower(kind: str, goal: float) -> Callable[[Get], Verdict]:
    def judge(get: Get) -> Verdict:
        ratio = get(f"{kind}_vs_flower")
        ours, theirs = get(f"fedge_{kind}_gbps"), get(f"flower_{kind}_gbps")
        return f"{ratio:.1f}x Flower ({ours:.2f} vs {theirs:.2f} GB/s)", ratio >= goal

    return judge


def _memory_share(get: Get) -> Verdict:
    share, rate, memory = get("add_many_share"), get("add_many_gbps"), get("memory_pass_gbps")
    return f"{share:.0%} ({rate:.2f} of {memory:.2f} GB/s; add_many, checked)", share >= 0.5


def _fold_share(get: Get) -> Verdict:
    share, rate = get("fold_share_k50"), get("fold_gbps_k50")
    return f"{share:.0%} ({rate:.2f} GB/s)", share >= 0.5


def _fleet(devices: int) -> Callable[[Get], Verdict]:
    def judge(get: Get) -> Verdict:
        ours, theirs = get(f"fedge_s_round_{devices}"), get(f"flower_s_round_{devices}")
        ratio = ours / theirs
        return f"{ours:.2f} vs Flower {theirs:.2f} s/round ({ratio:.2f}x)", ratio <= 0.5

    return judge


def _fleet_small(get: Get) -> Verdict:
    ours, theirs = get("fedge_s_round_10"), get("flower_s_round_10")
    return f"{ours:.2f} s/round (Flower {theirs:.2f})", ours < theirs


def _first_round(get: Get) -> Verdict:
    ours = [get(f"fedge_round1_s_{n}") for n in (10, 1000)]
    theirs = [get(f"flower_round1_s_{n}") for n in (10, 1000)]
    text = (
        f"fedge {min(ours):.1f}-{max(ours):.1f} s, Flower {min(theirs):.1f}-{max(theirs):.1f} s"
        " (10 and 1,000 devices)"
    )
    return text, max(ours) < min(theirs)


def _ingest(get: Get) -> Verdict:
    rate, p99 = get("updates_s"), get("p99_ms")
    return f"{rate:.0f} updates/s, p99 {p99:.0f} ms", rate >= 300


ROWS = (
    Row(
        "weighted mean, 50 x 1M float32, vs Flower (same process and NumPy)",
        "3.05-3.12 GB/s, 2.0x Flower (1.53 GB/s)",
        ">= 4x Flower",
        "aggregation_bench",
        _vs_flower("mean", 4.0),
    ),
    Row(
        "weighted mean, share of the NumPy memory pass",
        "17% of the memory pass (18-21 GB/s)",
        ">= 50%",
        "aggregation_bench",
        _memory_share,
    ),
    Row(
        "weighted mean, the server's fold of a 50-update group commit (batch_mean_bench)",
        "17% of the memory pass (the issue's mean)",
        ">= 50%",
        "batch_mean_bench",
        _fold_share,
    ),
    Row(
        "coordinate median vs Flower",
        "0.27 GB/s, 1.9x Flower (0.14 GB/s)",
        ">= 3x",
        "aggregation_bench",
        _vs_flower("median", 3.0),
    ),
    Row(
        "trimmed mean 0.2 vs Flower",
        "0.20 GB/s, 1.0x Flower (0.20 GB/s)",
        ">= 2x",
        "aggregation_bench",
        _vs_flower("trimmed", 2.0),
    ),
    Row(
        "fleet, 1,000 devices, 100 per round, vs Flower (Ray, PyTorch)",
        "1.81 vs Flower 1.76 s/round (even)",
        "<= 0.5x Flower's s/round",
        "flower_sim_bench",
        _fleet(1000),
    ),
    Row(
        "fleet, 10,000 devices, 100 per round, vs Flower",
        "not in the issue's table (goal only)",
        "<= 0.5x Flower's s/round",
        "flower_sim_bench",
        _fleet(10000),
        quick_note="not measured: the --quick run has no 10,000-device fleet",
    ),
    Row(
        "fleet, 10 devices",
        "0.17 s/round (Flower 0.32)",
        "keep (ahead of Flower)",
        "flower_sim_bench",
        _fleet_small,
    ),
    Row(
        "first round (start-up)",
        "fedge 0.2-3.8 s, Flower 18-25 s (starts Ray)",
        "keep (below Flower's)",
        "flower_sim_bench",
        _first_round,
    ),
    Row(
        "ingest, 1 MB updates, 8 uploaders, receipt after fsync",
        "157 updates/s, p99 88 ms",
        ">= 300/s on one process",
        "server_ingest_bench",
        _ingest,
    ),
)

SUITE_BEFORE = "27 min (954 tests, other work beside it), 1 failing"
SUITE_GOAL = "<= 12 min, 0 failing"
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")


def suite_verdict(text: str) -> Verdict:
    """``--suite-time "27m before, 9m40s after, 0 failed"``: the text as
    given, met when the time "after" is at most 12 minutes and it says
    "0 failed"; a text without an "after" time or a failure count is an error."""
    after = re.search(r"(\S+)\s+after\b", text)
    failed = re.search(r"\b(\d+)\s+fail", text)
    duration = _DURATION.fullmatch(after.group(1).rstrip(",")) if after else None
    if duration is None or not any(duration.groups()) or failed is None:
        raise ValueError(
            f"--suite-time {text!r}: say the time after and the failures, "
            "e.g. '15m37s before, 9m40s after, 0 failed'"
        )
    minutes = float(duration.group(1) or 0) + float(duration.group(2) or 0) / 60
    shown = f"{text} (given with --suite-time, not run by this report)"
    return shown, minutes <= 12 and int(failed.group(1)) == 0


@dataclass(frozen=True)
class Cell:
    now: str
    met: bool | None


def cell(row: Row, ran: Mapping[str, Results | None], quick: bool) -> Cell:
    """The row's "now" and "met": from its benchmark's results when it ran
    and succeeded; :class:`ResultMissing` when it ran and lacks a figure."""
    if row.bench not in ran:
        return Cell(f"not measured: bench.{row.bench} was not in this run", None)
    results = ran[row.bench]
    if results is None:
        return Cell(f"not measured: bench.{row.bench} failed (see its section)", None)
    if quick and row.quick_note:
        return Cell(row.quick_note, None)
    now, met = row.judge(lambda name: need(row.bench, results, name))
    return Cell(now, met)


def _met(value: bool | None) -> str:
    return {True: "**met**", False: "not met", None: "-"}[value]


def table(
    ran: Mapping[str, Results | None], quick: bool, suite: str | None
) -> tuple[list[str], list[str]]:
    """The summary's markdown lines, and the errors (a figure a benchmark
    that ran did not print), each also shown in its row."""
    lines = [
        "## Summary: issue 28, before and now",
        "",
        '"before" is quoted from issue 28; "now" is parsed from this run\'s '
        "benchmarks (their `RESULT` lines, below each section).",
        "",
        "| measure | before (issue 28) | goal | now (this run) | met |",
        "|---|---|---|---|---|",
    ]
    errors: list[str] = []
    for row in ROWS:
        try:
            found = cell(row, ran, quick)
        except ResultMissing as missing:
            errors.append(str(missing))
            found = Cell(f"**error: {missing}**", None)
        cells = (row.measure, row.before, row.goal, found.now, _met(found.met))
        lines.append("| " + " | ".join(cells) + " |")
    if suite is None:
        now, met = "not given (`--suite-time`); the report does not run the suite", None
    else:
        now, met = suite_verdict(suite)
    cells = ("`bash scripts/test.sh`, fresh clone", SUITE_BEFORE, SUITE_GOAL, now, _met(met))
    lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""], errors
