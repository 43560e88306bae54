"""The figures a benchmark hands to ``bench.report``: ``RESULT name=value`` lines.

A benchmark prints its tables for people and, last, one line per figure
that the report's summary reads::

    RESULT mean_vs_flower=4.21

Names are lower-case words joined by ``_``; values are plain numbers. The
report reads these lines, never the tables, so a table's layout can change
freely. A figure the summary needs that a benchmark did not print is an
error that names the benchmark (:class:`ResultMissing`), not a blank cell.
"""

from __future__ import annotations

import math
import re

_NAME = re.compile(r"[a-z][a-z0-9_]*")
_LINE = re.compile(r"^RESULT ([a-z][a-z0-9_]*)=(\S+)$")

Results = dict[str, float]


class ResultMissing(LookupError):
    """A benchmark's output lacks a ``RESULT`` line that the report needs."""

    def __init__(self, bench: str, name: str) -> None:
        super().__init__(
            f"bench.{bench} printed no 'RESULT {name}=...' line "
            "(did it fail, or run with arguments that skip this figure?)"
        )
        self.bench = bench
        self.name = name


def emit(name: str, value: float) -> None:
    """Print one figure for the report (after the tables)."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"a result name is lower-case words joined by '_', not {name!r}")
    if not math.isfinite(value):
        raise ValueError(f"result {name} is not a finite number: {value!r}")
    print(f"RESULT {name}={value:.6g}", flush=True)


def parse(bench: str, output: str) -> Results:
    """Every ``RESULT`` line of one benchmark's output; a malformed value
    is an error naming the benchmark."""
    found: Results = {}
    for line in output.splitlines():
        match = _LINE.match(line.strip())
        if match is None:
            continue
        name, text = match.groups()
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise ValueError(f"bench.{bench} printed RESULT {name}={text!r}: not a finite number")
        found[name] = value
    return found


def need(bench: str, results: Results, name: str) -> float:
    """The figure ``name`` of ``bench``, or :class:`ResultMissing`."""
    if name not in results:
        raise ResultMissing(bench, name)
    return results[name]
