"""Group commit: what many request threads want stored is committed together,
with one wait for the disk for all of them.

Each thread :meth:`GroupCommit.submit`\\ s its item and blocks. One of them
at a time is the leader: it takes every item waiting (its own among them),
commits them as one batch, hands each thread its own result and steps
down; items that arrived meanwhile form the next batch. Nothing waits for
a batch to fill: a lone item is committed at once, and under load batches
grow by themselves to what arrived during the previous commit (so an
fsync costs each item less the busier the server is).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

# The batch's result for each item in order: its result, or what to raise in
# its thread (a refusal of that item alone).
CommitBatch = Callable[[Sequence[Item]], Sequence["Result | BaseException"]]


@dataclass
class _Entry(Generic[Item, Result]):
    item: Item
    done: bool = False
    result: Result | None = None
    error: BaseException | None = None


class GroupCommit(Generic[Item, Result]):
    def __init__(self, commit_batch: CommitBatch[Item, Result]) -> None:
        self._commit_batch = commit_batch
        self._cond = threading.Condition()
        self._waiting: list[_Entry[Item, Result]] = []
        self._leading = False

    @property
    def waiting(self) -> int:
        """Items submitted and not yet taken into a batch."""
        with self._cond:
            return len(self._waiting)

    def submit(self, item: Item) -> Result:
        """Commit ``item`` (with whatever else is waiting); its result, or
        its error raised here."""
        entry: _Entry[Item, Result] = _Entry(item)
        batch: list[_Entry[Item, Result]] = []
        with self._cond:
            self._waiting.append(entry)
            while self._leading and not entry.done:
                self._cond.wait()
            if not entry.done:  # lead: take the batch, ours included
                self._leading = True
                batch, self._waiting = self._waiting, []
        if batch:
            self._lead(batch)
        if entry.error is not None:
            raise entry.error
        return entry.result  # type: ignore[return-value]  # done without error: set

    def _lead(self, batch: list[_Entry[Item, Result]]) -> None:
        try:
            outcomes = list(self._commit_batch([e.item for e in batch]))
            if len(outcomes) != len(batch):
                raise RuntimeError(f"{len(outcomes)} results for a batch of {len(batch)}")
        except BaseException as exc:  # the whole batch failed: each thread raises it
            outcomes = [exc] * len(batch)
        with self._cond:
            for entry, outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    entry.error = outcome
                else:
                    entry.result = outcome
                entry.done = True
            self._leading = False
            self._cond.notify_all()
