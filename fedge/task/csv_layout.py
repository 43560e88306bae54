"""The one CSV layout every command reads examples from.

One example per row. A first row that is not all numbers is a header that
names the columns: ``y`` (or ``label``) is the label, ``device`` the
example's device id, every other column a feature, in file order. A first
row of numbers is data (a file without a header): every column is then a
feature. ``fedge simulate --data`` needs the header (it must find the
label); ``fedge predict``, ``--samples`` and ``--calibration`` take either,
and skip the label and device columns, so one file serves all of them.
"""

from __future__ import annotations

import csv
from pathlib import Path

LABEL_COLUMNS = ("y", "label")
DEVICE_COLUMN = "device"

Row = tuple[int, list[str]]


def read_rows(path: Path) -> list[Row]:
    """The non-blank rows, each with its line number (for messages).

    Raises what reading raises (``OSError``, ``UnicodeDecodeError``,
    ``csv.Error``): each caller says it in its own error type.
    """
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        return [(reader.line_num, row) for row in reader if any(c.strip() for c in row)]


def is_header(row: list[str]) -> bool:
    """Whether a first row names columns: any cell that is not a number."""
    return not all(_is_number(cell) for cell in row)


def is_feature(column: str) -> bool:
    """Whether a header's column holds a feature (not the label or the device)."""
    return column.strip().lower() not in (*LABEL_COLUMNS, DEVICE_COLUMN)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True
