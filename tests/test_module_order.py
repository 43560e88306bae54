"""The parallel run's module order (tests/conftest.py): modules with tests
marked ``long(seconds)`` first, the longest in all first, then the others
by their number of tests; within a module the order is kept."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import pytest

from tests.conftest import pytest_collection_modifyitems


@dataclass
class Collected:
    """What the ordering reads of a collected test: its id and its marks."""

    nodeid: str
    seconds: float | None = None

    def get_closest_marker(self, name: str) -> Any:
        if name != "long" or self.seconds is None:
            return None
        return pytest.mark.long(self.seconds).mark


def order(collected: list[Collected]) -> list[str]:
    items = cast(list[pytest.Item], collected)
    pytest_collection_modifyitems(items)
    return [item.nodeid for item in items]


def test_long_modules_come_first_the_longest_in_all_first() -> None:
    collected = [
        Collected("tests/a.py::many_1"),
        Collected("tests/a.py::many_2"),
        Collected("tests/a.py::many_3"),
        Collected("tests/b.py::one", 60),
        Collected("tests/c.py::first", 40),
        Collected("tests/c.py::quick"),
        Collected("tests/c.py::second", 40),
        Collected("tests/d.py::few_1"),
        Collected("tests/d.py::few_2"),
    ]

    assert order(collected) == [
        "tests/c.py::first",  # 80 s in all
        "tests/c.py::quick",
        "tests/c.py::second",
        "tests/b.py::one",  # 60 s
        "tests/a.py::many_1",  # then by number of tests
        "tests/a.py::many_2",
        "tests/a.py::many_3",
        "tests/d.py::few_1",
        "tests/d.py::few_2",
    ]
