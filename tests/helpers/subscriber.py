"""An SSE subscriber on a thread, for tests: what it receives goes on a queue.

Test scaffolding, not part of the installed package.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from fedge.client_sim.device.events import EventSubscriber
from fedge.wire.sse import Event


@contextmanager
def subscribed(
    url: str, after: int | None, types: list[str] | None = None
) -> Iterator[tuple[EventSubscriber, queue.Queue[Event]]]:
    """A subscriber on a thread, putting what it receives on a queue; stopped
    (from this thread) and joined at the end."""
    subscriber = EventSubscriber(url, after=after, types=types)
    received: queue.Queue[Event] = queue.Queue()

    def run() -> None:
        for event in subscriber:
            received.put(event)

    thread = threading.Thread(target=run, name="subscriber", daemon=True)
    thread.start()
    try:
        yield subscriber, received
    finally:
        subscriber.stop()
        thread.join(timeout=10)
        assert not thread.is_alive(), "the subscriber did not stop"


def take(received: queue.Queue[Event], count: int, timeout: float = 10.0) -> list[Event]:
    deadline = time.monotonic() + timeout
    events: list[Event] = []
    while len(events) < count:
        try:
            events.append(received.get(timeout=max(deadline - time.monotonic(), 0.001)))
        except queue.Empty:
            pytest.fail(f"got {len(events)} of {count} events in {timeout} s: {events}")
    return events
