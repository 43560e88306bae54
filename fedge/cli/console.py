"""Rich consoles for the CLI that do not cut lines in a log."""

from __future__ import annotations

import os

from rich.console import Console

# Columns when the output is not a terminal (a pipe, a CI log): rich would
# use 80 and cut every longer line.
LOG_WIDTH = 200


def make_console(stderr: bool = False) -> Console:
    """A console as wide as the terminal; in a log, ``LOG_WIDTH`` columns
    (or ``$COLUMNS``, when set), so lines are not cut."""
    console = Console(stderr=stderr)
    if console.is_terminal or "COLUMNS" in os.environ:
        return console
    return Console(stderr=stderr, width=LOG_WIDTH)
