"""The ingest bench's database costs: a process tree's CPU from /proc, and
two readings turned into costs per update."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.ingest.db_costs import DbReading, per_update, tree_cpu_seconds


def _process(proc: Path, pid: int, comm: str, ppid: int, utime: int, stime: int) -> None:
    # /proc/<pid>/stat: pid (comm) state ppid pgrp session tty tpgid flags
    # minflt cminflt majflt cmajflt utime stime ...
    fields = ["S", ppid, pid, pid, 0, -1, 0, 0, 0, 0, 0, utime, stime, 0, 0, 20, 0, 1]
    (proc / str(pid)).mkdir()
    (proc / str(pid) / "stat").write_text(f"{pid} ({comm}) " + " ".join(map(str, fields)) + "\n")


def test_tree_cpu_sums_the_root_and_all_its_descendants_only(tmp_path: Path) -> None:
    tick = os.sysconf("SC_CLK_TCK")
    _process(tmp_path, 1, "init", 0, 1000, 1000)
    _process(tmp_path, 10, "postgres", 1, 3, 2)  # the postmaster: 5 ticks
    _process(tmp_path, 11, "postgres: walwriter", 10, 7, 0)  # child: 7
    _process(tmp_path, 12, "postgres: fedge db 127.0.0.1(5) idle", 10, 20, 10)  # child: 30
    _process(tmp_path, 13, "odd ) name (", 12, 1, 1)  # grandchild: 2
    _process(tmp_path, 20, "python", 1, 500, 500)  # not in the tree
    (tmp_path / "self").mkdir()  # not a pid: skipped
    assert tree_cpu_seconds(10, tmp_path) == pytest.approx((5 + 7 + 30 + 2) / tick)
    assert tree_cpu_seconds(12, tmp_path) == pytest.approx(32 / tick)
    assert tree_cpu_seconds(13, tmp_path) == pytest.approx(2 / tick)


def test_tree_cpu_of_a_missing_root_is_an_error(tmp_path: Path) -> None:
    _process(tmp_path, 1, "init", 0, 1, 1)
    with pytest.raises(ProcessLookupError):
        tree_cpu_seconds(99, tmp_path)


def test_tree_cpu_of_this_process_on_the_real_proc_grows() -> None:
    before = tree_cpu_seconds(os.getpid())
    total = sum(i * i for i in range(2_000_000))  # burn some CPU
    assert total > 0
    assert tree_cpu_seconds(os.getpid()) > before


def test_per_update_divides_the_differences_and_leaves_unknowns_blank() -> None:
    before = DbReading(cpu_s=1.0, commits=100, statements=None, size_bytes=8000, wal_bytes=0)
    after = DbReading(cpu_s=1.5, commits=300, statements=None, size_bytes=16000, wal_bytes=4000)
    costs = per_update(before, after, 100)
    assert costs.cpu_ms == pytest.approx(5.0)
    assert costs.commits == pytest.approx(2.0)
    assert costs.statements is None
    assert costs.size_bytes == pytest.approx(80.0)
    assert costs.wal_bytes == pytest.approx(40.0)
    with pytest.raises(ValueError):
        per_update(before, after, 0)
