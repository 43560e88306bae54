"""bench.report's summary: the RESULT lines benchmarks print, read back
into issue 28's before/now table, and a clear error when one is missing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.results import ResultMissing, emit, need, parse
from bench.summary import ROWS, suite_verdict, table

ROOT = Path(__file__).resolve().parents[2]

AGGREGATION = """\
50 updates x 1,000,000 float32 (0.20 GB) ...
┃ aggregation ┃ implementation ┃ GB/s ┃
│ memory pass │ NumPy x.sum()  │ 20.00 │
RESULT memory_pass_gbps=20
RESULT add_many_gbps=12
RESULT add_many_share=0.6
RESULT mean_share=0.3
RESULT flower_mean_gbps=1.5
RESULT fedge_mean_gbps=7.5
RESULT mean_vs_flower=5
RESULT flower_median_gbps=0.14
RESULT fedge_median_gbps=0.28
RESULT median_vs_flower=2
RESULT flower_trimmed_gbps=0.2
RESULT fedge_trimmed_gbps=0.5
RESULT trimmed_vs_flower=2.5
"""

FLEET = "".join(
    f"RESULT {engine}_{kind}_{n}={value}\n"
    for n, flower, fedge in ((10, 0.3, 0.2), (1000, 2.0, 0.8), (10000, 3.0, 2.0))
    for engine, kind, value in (
        ("flower", "s_round", flower),
        ("fedge", "s_round", fedge),
        ("flower", "round1_s", 20.0),
        ("fedge", "round1_s", 1.5),
    )
)


def rows_of(lines: list[str]) -> dict[str, list[str]]:
    """The summary's table rows by their measure."""
    found = {}
    for line in lines:
        if line.startswith("| ") and not line.startswith("| measure"):
            cells = [cell.strip() for cell in line.strip("|").split(" | ")]
            found[cells[0]] = cells
    return found


def test_parse_reads_result_lines_among_tables() -> None:
    results = parse("aggregation_bench", AGGREGATION)

    assert results["mean_vs_flower"] == 5.0
    assert results["add_many_share"] == 0.6
    assert len(results) == 13


def test_parse_refuses_a_value_that_is_not_a_number() -> None:
    with pytest.raises(ValueError, match=r"bench\.ingest printed RESULT updates_s='fast'"):
        parse("ingest", "RESULT updates_s=fast\n")
    with pytest.raises(ValueError, match="not a finite number"):
        parse("ingest", "RESULT updates_s=nan\n")


def test_a_missing_result_names_the_benchmark_and_the_figure() -> None:
    with pytest.raises(ResultMissing) as missing:
        need("flower_sim_bench", {"fedge_s_round_10": 0.2}, "flower_s_round_10")

    assert missing.value.bench == "flower_sim_bench"
    assert "bench.flower_sim_bench printed no 'RESULT flower_s_round_10=" in str(missing.value)


def test_emit_prints_a_line_that_parse_reads(capsys: pytest.CaptureFixture[str]) -> None:
    emit("p99_ms", 87.654321)

    assert parse("x", capsys.readouterr().out) == {"p99_ms": pytest.approx(87.6543)}
    with pytest.raises(ValueError):
        emit("p99 ms", 1.0)
    with pytest.raises(ValueError):
        emit("p99_ms", float("inf"))


def test_the_summary_shows_each_figure_now_and_whether_its_goal_is_met() -> None:
    ran = {
        "aggregation_bench": parse("aggregation_bench", AGGREGATION),
        "batch_mean_bench": parse("b", "RESULT fold_share_k50=0.45\nRESULT fold_gbps_k50=9\n"),
        "flower_sim_bench": parse("flower_sim_bench", FLEET),
        "server_ingest_bench": parse("i", "RESULT updates_s=310.4\nRESULT p99_ms=61.2\n"),
    }

    lines, errors = table(ran, quick=False, suite="15m37s before, 9m40s after, 0 failed")
    rows = rows_of(lines)

    assert errors == []
    assert len(rows) == len(ROWS) + 1
    mean = rows["weighted mean, 50 x 1M float32, vs Flower (same process and NumPy)"]
    assert mean[1] == "3.05-3.12 GB/s, 2.0x Flower (1.53 GB/s)"  # the figure
    assert mean[3:] == ["5.0x Flower (7.50 vs 1.50 GB/s)", "**met**"]
    assert rows["weighted mean, share of the NumPy memory pass"][3:] == [
        "60% (12.00 of 20.00 GB/s; add_many, checked)",
        "**met**",
    ]
    fold = "weighted mean, the server's fold of a 50-update group commit (batch_mean_bench)"
    assert rows[fold][3:] == ["45% (9.00 GB/s)", "not met"]
    assert rows["coordinate median vs Flower"][4] == "not met"  # 2.0x < 3x
    assert rows["trimmed mean 0.2 vs Flower"][4] == "**met**"
    big = rows["fleet, 10,000 devices, 100 per round, vs Flower"]
    assert big[3:] == ["2.00 vs Flower 3.00 s/round (0.67x)", "not met"]
    thousand = rows["fleet, 1,000 devices, 100 per round, vs Flower (Ray, PyTorch)"]
    assert thousand[3:] == ["0.80 vs Flower 2.00 s/round (0.40x)", "**met**"]
    assert rows["fleet, 10 devices"][4] == "**met**"
    assert rows["first round (start-up)"][3].startswith("fedge 1.5-1.5 s, Flower 20.0-20.0 s")
    ingest = rows["ingest, 1 MB updates, 8 uploaders, receipt after fsync"]
    assert ingest[3:] == ["310 updates/s, p99 61 ms", "**met**"]
    suite = rows["`bash scripts/test.sh`, fresh clone"]
    assert suite[3].startswith("15m37s before, 9m40s after, 0 failed (given with --suite-time")
    assert suite[4] == "**met**"


def test_a_benchmark_without_its_result_line_is_an_error_not_a_blank() -> None:
    without = AGGREGATION.replace("RESULT median_vs_flower=2\n", "")
    ran = {"aggregation_bench": parse("aggregation_bench", without)}

    lines, errors = table(ran, quick=False, suite=None)

    assert errors == [
        "bench.aggregation_bench printed no 'RESULT median_vs_flower=...' line "
        "(did it fail, or run with arguments that skip this figure?)"
    ]
    median = rows_of(lines)["coordinate median vs Flower"]
    assert median[3].startswith("**error: bench.aggregation_bench printed no")
    assert median[4] == "-"


def test_benchmarks_not_run_or_failed_say_so_in_their_rows() -> None:
    lines, errors = table({"server_ingest_bench": None}, quick=True, suite=None)
    rows = rows_of(lines)

    assert errors == []
    assert rows["ingest, 1 MB updates, 8 uploaders, receipt after fsync"][3] == (
        "not measured: bench.server_ingest_bench failed (see its section)"
    )
    assert rows["fleet, 10 devices"][3] == (
        "not measured: bench.flower_sim_bench was not in this run"
    )
    assert rows["`bash scripts/test.sh`, fresh clone"][3].startswith("not given (`--suite-time`)")


def test_suite_time_is_judged_from_its_after_time_and_failures() -> None:
    assert suite_verdict("27m before, 11m59s after, 0 failed")[1] is True
    assert suite_verdict("27m before, 12.5m after, 0 failed")[1] is False
    assert suite_verdict("27m before, 8m after, 2 failed")[1] is False
    with pytest.raises(ValueError, match="say the time after and the failures"):
        suite_verdict("about ten minutes")


def test_a_real_benchmark_prints_the_figures_its_row_needs(tmp_path: Path) -> None:
    out = tmp_path / "report.md"
    command = [sys.executable, "-m", "bench.report", "--quick", "--only", "batch_mean"]
    command += ["--out", str(out)]

    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)

    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert "## Summary: issue 28, before and now" in text
    assert "\nRESULT fold_share_k50=" in text
    fold = "weighted mean, the server's fold of a 50-update group commit (batch_mean_bench)"
    now = rows_of(text.splitlines())[fold][3]
    share = float(now.split("%")[0]) / 100
    assert share == pytest.approx(parse("batch_mean_bench", text)["fold_share_k50"], abs=0.006)


def test_report_refuses_a_suite_time_it_cannot_read(tmp_path: Path) -> None:
    out = tmp_path / "report.md"
    command = [sys.executable, "-m", "bench.report", "--only", "events", "--out", str(out)]
    command += ["--suite-time", "fast"]

    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)

    assert done.returncode == 2
    assert "--suite-time 'fast': say the time after and the failures" in done.stderr
    assert not out.exists()
