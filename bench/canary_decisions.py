"""The canary's decision rule against simulated canaries whose truth is known.

Each simulated canary is a stream of device reports. A device holds 5 to
50 held-out examples (drawn like the demo's devices), the live model is
right on each with the device's own accuracy (about 0.8, varying between
devices), and the candidate on the same examples with that accuracy plus
the true difference; the two outcomes share most of their randomness, as
two versions of one model do (``--coupling``). A share of devices lie
(``--liars``): they push for the wrong outcome as hard as the rule lets
them (the old rule: 10M claimed examples, capped at 10,000; the new rule:
the extreme difference, since example counts carry no weight).

Old rule: after 5 reports, promote iff the example-weighted mean of the
candidate is at least the live one's minus 0.01. New rule: the server's
sequential test (:mod:`fedge.server.releases.canary.sequential`) with its
defaults, looking after every report from the 5th, up to ``--max-reports``
(then the default, rollback). Printed per truth: wrong promotions, wrong
rollbacks, and the mean reports and examples used. Run:

    .venv/bin/python -m bench.canary_decisions [--runs 1000] [--seed 0]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
from rich.console import Console
from rich.table import Table

from fedge.server.config import ServerConfig
from fedge.server.releases.canary.sequential import first_decision

DEFAULTS = ServerConfig()
MARGIN = DEFAULTS.canary_margin
OLD_MARGIN, OLD_REPORTS, OLD_CAP = 0.01, 5, 10_000


@dataclass(frozen=True)
class Report:
    examples: int
    candidate: float
    live: float
    liar: bool


@dataclass(frozen=True)
class Outcome:
    decision: str  # promote, rollback, or "limit" (ended with the default)
    reports: int
    examples: int


def device_reports(
    rng: np.random.Generator, truth: float, count: int, liars: float, coupling: float
) -> list[Report]:
    reports = []
    for _ in range(count):
        n = int(rng.integers(5, 51))
        p = float(np.clip(rng.normal(0.8, 0.08), 0.05, 0.95))
        q = float(np.clip(p + truth, 0.0, 1.0))
        u = rng.random(n)
        shared = rng.random(n) < coupling
        v = np.where(shared, u, rng.random(n))
        live, candidate = float(np.mean(u < p)), float(np.mean(v < q))
        reports.append(Report(n, candidate, live, bool(rng.random() < liars)))
    return reports


def old_rule(reports: list[Report], truth: float) -> Outcome:
    shown = reports[:OLD_REPORTS]
    weights, c_sum, l_sum = 0, 0.0, 0.0
    for r in shown:
        if r.liar:  # 10M claimed examples, capped; the metric that flips it
            c, live = (1.0, 0.0) if truth < 0 else (0.0, 1.0)
            w = OLD_CAP
        else:
            w, c, live = r.examples, r.candidate, r.live
        weights += w
        c_sum += w * c
        l_sum += w * live
    promote = c_sum / weights >= l_sum / weights - OLD_MARGIN
    examples = sum(r.examples for r in shown)
    return Outcome("promote" if promote else "rollback", len(shown), examples)


def new_rule(reports: list[Report], truth: float) -> Outcome:
    bound = DEFAULTS.canary_difference_bound
    lie = bound if truth < 0 else -bound  # toward the wrong outcome
    differences = [lie if r.liar else r.candidate - r.live for r in reports]
    decision, used = first_decision(
        differences,
        MARGIN,
        bound,
        DEFAULTS.canary_alpha,
        DEFAULTS.canary_beta,
        floor=DEFAULTS.canary_min_reports,
    )
    examples = sum(r.examples for r in reports[:used])
    return Outcome(decision or "limit", used, examples)


def row(outcomes: list[Outcome], truth: float) -> list[str]:
    runs = len(outcomes)
    promoted = sum(o.decision == "promote" for o in outcomes) / runs
    rolled = sum(o.decision in ("rollback", "limit") for o in outcomes) / runs
    limit = sum(o.decision == "limit" for o in outcomes) / runs
    wrong_promotion = f"{promoted:.1%}" if truth <= -MARGIN else "-"
    wrong_rollback = f"{rolled:.1%}" if truth >= 0 else "-"
    reports = np.mean([o.reports for o in outcomes])
    examples = np.mean([o.examples for o in outcomes])
    return [
        wrong_promotion,
        wrong_rollback,
        f"{promoted:.1%}",
        f"{limit:.1%}" if limit else "-",
        f"{reports:.1f}",
        f"{examples:.0f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-reports", type=int, default=400)
    parser.add_argument("--liars", type=float, default=0.10)
    parser.add_argument("--coupling", type=float, default=0.8)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    table = Table(
        title=f"canary decisions: {args.runs} simulated canaries per row, margin {MARGIN:g}"
        f" (old rule: margin {OLD_MARGIN:g}, {OLD_REPORTS} reports)"
    )
    for column in (
        "truth",
        "liars",
        "rule",
        "wrong promote",
        "wrong rollback",
        "promoted",
        "ended by limit",
        "reports",
        "examples",
    ):
        table.add_column(column, justify="left" if column in ("truth", "rule") else "right")
    truths = (
        ("better by the margin", MARGIN),
        ("equal", 0.0),
        ("worse by the margin", -MARGIN),
        ("worse by twice the margin", -2 * MARGIN),
    )
    for liars in (0.0, args.liars):
        for name, truth in truths:
            streams = [
                device_reports(rng, truth, args.max_reports, liars, args.coupling)
                for _ in range(args.runs)
            ]
            for rule_name, rule in (("old", old_rule), ("new", new_rule)):
                outcomes = [rule(reports, truth) for reports in streams]
                table.add_row(
                    f"{name} ({truth:+g})", f"{liars:.0%}", rule_name, *row(outcomes, truth)
                )
        table.add_section()
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
