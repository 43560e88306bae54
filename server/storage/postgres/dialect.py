"""SQLite's SQL, as the row classes write it, in PostgreSQL's words.

The statements are shared (:mod:`fedge.server.storage.sqlite`), written in
what both databases understand; what remains is mechanical:

- parameters: ``?`` becomes ``%s`` (psycopg2's), and a literal ``%`` is doubled;
- ``INSERT OR IGNORE`` becomes ``INSERT ... ON CONFLICT DO NOTHING``;
- a Python bool is sent as 0 or 1 (the schema's flags are integers, as in SQLite);
- column types in the schema (:func:`ddl`): SQLite's INTEGER is 64-bit and
  its REAL a double, so BIGINT and DOUBLE PRECISION; an autoincrement key is
  a BIGSERIAL; and text compares byte by byte (``COLLATE "C"``), as in
  SQLite, so orderings by digest or device id (the aggregation's summing
  order) are the same in both stores whatever the database's locale.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

_IGNORE = "INSERT OR IGNORE INTO"


@functools.lru_cache(maxsize=1024)
def statement(sql: str) -> str:
    """``sql`` (one statement with ``?`` parameters) for psycopg2."""
    text = sql.replace("%", "%%").replace("?", "%s")
    if text.lstrip().startswith(_IGNORE):
        text = text.replace(_IGNORE, "INSERT INTO", 1).rstrip().rstrip(";")
        text += " ON CONFLICT DO NOTHING"
    return text


def parameters(params: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(int(p) if isinstance(p, bool) else p for p in params)


_TYPES = (
    (re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b"), "BIGSERIAL PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
    (re.compile(r"\bTEXT\b"), 'TEXT COLLATE "C"'),
)
# A column's definition in a CREATE TABLE: its name, then its type.
_COLUMN = re.compile(r"\s+\w+ (INTEGER|REAL|TEXT)\b")


def ddl(script: str) -> str:
    """A schema script (several statements, no parameters) for PostgreSQL."""
    out = []
    for line in script.splitlines():
        text = line
        if text.lstrip().startswith(_IGNORE):
            text = statement(text).replace("%%", "%")
        elif _COLUMN.match(text):
            for pattern, replacement in _TYPES:
                text = pattern.sub(replacement, text, count=1)
        out.append(text)
    return "\n".join(out)
